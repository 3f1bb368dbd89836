# secrets-sidecar: the two commands are `make demo` and `make test`.
# Both install what they need on first use: the Python venv (.venv, pinned requirements.txt)
# and the npm packages (node_modules, package-lock.json).

CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

FUZZ_SECONDS ?= 60

.PHONY: demo test venv lint package-check perf-guard supply-chain audit release release-check bench bench-smoke soak fuzz fuzz-smoke build clean

## demo: the weather API locally: moto, fake providers, the Lambda emulator running the
## real secrets-sidecar layer and weather bootstrap; three example calls; serves until Ctrl-C.
demo: venv node_modules/.package-lock.json
	$(CARGO) build --locked -p secrets-sidecar -p weather-function -p harness --bins
	$(CARGO) run --locked -q -p harness --bin demo

## test: formatting, lints, every test (unit, property, integration against moto,
## emulator contract, end to end), then the packaging checks.
test: venv node_modules/.package-lock.json lint
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --locked --no-fail-fast
else
	$(CARGO) test --workspace --locked --no-fail-fast
endif
	$(MAKE) bench-smoke
	$(MAKE) package-check
	$(MAKE) perf-guard
	$(MAKE) supply-chain
	$(MAKE) release-check
	$(MAKE) fuzz-smoke

## bench: the benchmarks (several minutes); writes BENCHMARKS.md. Uses wrk (Debian),
## installed here when missing, and valgrind for the profile.
bench: venv node_modules/.package-lock.json
	command -v wrk >/dev/null 2>&1 || apt-get install -y wrk >/dev/null 2>&1 || echo "wrk not installed: the in-process loader will be used"
	./layer.zip.sh
	$(CARGO) build --locked --release -p secrets-sidecar -p weather-function -p harness -p bench --bins
	$(CARGO) build --locked --profile profiling -p secrets-sidecar -p harness --bin secrets-sidecar --bin baseline-server
	$(TARGET_DIR)/release/bench

## bench-smoke: every benchmark in seconds, on debug builds (part of `make test`):
## checks they still run; its numbers mean nothing.
bench-smoke: venv node_modules/.package-lock.json
	$(CARGO) build --locked -p secrets-sidecar -p weather-function -p harness -p bench --bins
	$(TARGET_DIR)/debug/bench --smoke

## package-check: release artifacts (glibc ceiling checked), `osls package` with no
## credentials, and cfn-lint on the generated template and on template.yaml.
package-check: venv node_modules/.package-lock.json
	./layer.zip.sh
	env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
		SLS_TELEMETRY_DISABLED=1 npx --no-install osls package
	$(VENV)/bin/cfn-lint --ignore-checks W3005 -- .serverless/cloudformation-template-update-stack.json
	$(VENV)/bin/cfn-lint -- template.yaml

## perf-guard: instructions per warm hit (callgrind, which counts instructions, not
## time, so it cannot flake) on the layer's own binary, and the layer zip's size, against
## the budgets in bench/budgets.txt: more than 5 % over fails (part of `make test`).
perf-guard: venv
	command -v valgrind >/dev/null 2>&1 || apt-get install -y valgrind >/dev/null 2>&1 || { echo "perf-guard: valgrind is needed (Debian's valgrind package)"; exit 1; }
	./layer.zip.sh
	$(CARGO) build --locked -p bench --bins
	$(TARGET_DIR)/debug/bench --guard

## supply-chain: the dependency policy in deny.toml (part of `make test`): licenses and
## sources over the workspace, duplicate versions over what the layer links; then `audit`.
CARGO_DENY_VERSION := 0.20.2
supply-chain:
	$(CARGO) deny --version 2>/dev/null | grep -q $(CARGO_DENY_VERSION) || $(CARGO) install --locked --quiet cargo-deny --version $(CARGO_DENY_VERSION)
	# every target's crates (cargo deny reads metadata for all platforms, offline)
	$(CARGO) fetch --locked --quiet
	$(CARGO) deny --offline --workspace check licenses sources
	$(CARGO) deny --offline --manifest-path extension/Cargo.toml --exclude-dev check bans
	$(MAKE) audit

## audit: RustSec advisories over the workspace. The database is fetched from GitHub:
## with ADVISORIES=1 (CI with network) a failure to fetch it fails; without, a local copy
## (a database folder holding crates/) is used when there is one, else the check is
## skipped with the reason printed.
ADVISORY_DB := $(or $(CARGO_HOME),$(HOME)/.cargo)/advisory-dbs
audit:
ifeq ($(ADVISORIES),1)
	$(CARGO) deny --workspace check advisories
else
	@if ls -d "$(ADVISORY_DB)"/*/crates >/dev/null 2>&1; then \
		$(CARGO) deny --offline --workspace check advisories; \
	else \
		echo "audit: SKIPPED: no RustSec advisory database in $(ADVISORY_DB) and ADVISORIES=1 not set; this machine cannot fetch it. Run 'make audit ADVISORIES=1' where github.com is reachable."; \
	fi
endif

## release: the release artifacts in dist/release for x86_64 and arm64 (release.sh):
## layer zips, standalone tarballs, CycloneDX SBOMs, SHA256SUMS.
release: venv
	./release.sh

## release-check: builds the x86_64 release twice, the second time in a new target
## directory, and checks the artifacts are byte-identical and complete (part of `make test`).
release-check: venv
	$(CARGO) test --locked -p harness --test system -- --ignored --test-threads=1 release::

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## soak: the reliability suites stretched out (an outage of minutes, 30 rotations,
## 100,000 distinct ids, a three-minute freeze); see RELIABILITY.md.
soak: venv
	$(CARGO) build --locked -p secrets-sidecar -p weather-function -p harness --bins
	SOAK=1 $(CARGO) test --locked -p secrets-sidecar --test integration -- faults:: rotation:: limits:: --test-threads=1 --nocapture
	SOAK=1 $(CARGO) test --locked -p harness --test system -- lifecycle_faults:: --test-threads=1 --nocapture

## fuzz: each cargo-fuzz target for FUZZ_SECONDS (60) with nightly and AddressSanitizer,
## growing the corpus kept in fuzz/corpus/; installs cargo-fuzz when missing.
## fuzz-smoke (part of `make test`): the same, skipped with the reason printed where no
## nightly toolchain is installed (cargo fuzz needs one).
FUZZ_TARGETS := query selector routing sdk
fuzz:
	command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install --locked --quiet cargo-fuzz --version 0.13.2
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t && \
		$(CARGO) +nightly fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 || exit 1; \
	done

fuzz-smoke:
	@if $(CARGO) +nightly --version >/dev/null 2>&1; then \
		$(MAKE) fuzz; \
	else \
		echo "fuzz-smoke: SKIPPED: no nightly toolchain here (cargo +nightly failed); run 'make fuzz' where one is installed."; \
	fi

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
	rm -rf $(VENV) dist node_modules .serverless deploy/cdk/node_modules deploy/cdk/dist deploy/cdk/cdk.out
