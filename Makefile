# secrets-sidecar: the two commands are `make demo` and `make test`.
# Both install what they need: the Python venv (.venv, pinned requirements.txt) on first use.

CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: demo test venv lint package-check build clean

## demo: the weather API locally: moto, fake providers, the Lambda emulator running the
## real secrets-sidecar layer and weather bootstrap; three example calls; serves until Ctrl-C.
demo: venv
	$(CARGO) build --locked -p secrets-sidecar -p weather-function -p harness --bins
	$(CARGO) run --locked -q -p harness --bin demo

## test: formatting, lints, every test (unit, property, integration against moto,
## emulator contract, end to end), then the packaging checks.
test: venv lint
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --locked --no-fail-fast
else
	$(CARGO) test --workspace --locked --no-fail-fast
endif
	$(MAKE) package-check

## package-check: release artifacts (glibc ceiling checked), `osls package` with no
## credentials, and cfn-lint on the generated template and on template.yaml.
package-check: venv node_modules/.package-lock.json
	./layer.zip.sh
	env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
		SLS_TELEMETRY_DISABLED=1 npx --no-install osls package
	$(VENV)/bin/cfn-lint --ignore-checks W3005 -- .serverless/cloudformation-template-update-stack.json
	$(VENV)/bin/cfn-lint -- template.yaml

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## venv: the project's Python tools (moto server, cfn-lint), pinned in requirements.txt.
venv: $(VENV)/.requirements

$(VENV)/.requirements: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	cp requirements.txt $@

build:
	$(CARGO) build --locked --workspace

clean:
	$(CARGO) clean
	rm -rf $(VENV) dist node_modules .serverless
