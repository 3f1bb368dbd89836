#!/usr/bin/env bash
# Builds the Lambda artifacts:
#   dist/layer.zip     extensions/secrets-sidecar (0755)   -> the Lambda layer, with
#                      secrets-sidecar-exec (0755)         -> /opt/secrets-sidecar-exec, the exec
#                                                             wrapper (AWS_LAMBDA_EXEC_WRAPPER)
#   dist/function.zip  bootstrap (0755)                    -> the weather function
# (dist/layer-arm64.zip and dist/function-arm64.zip with --arch arm64)
#
# Release builds that load on provided.al2023 whatever the build host: linked with
# cargo-zigbuild against glibc 2.17, then checked with objdump that no symbol needs a
# glibc newer than 2.34 (al2023's). The zips are reproducible (fixed timestamps, no
# extra attributes, fixed order). Installs what it needs when missing: cargo-zigbuild
# (crates.io) and zig (the `ziglang` package from PyPI, into .venv).
#
#   ./layer.zip.sh                 # x86_64
#   ./layer.zip.sh --arch arm64    # aarch64, where the Rust target can be installed
set -euo pipefail
cd "$(dirname "$0")"

ARCH=x86_64
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH="${2:-}"; shift 2 ;;
    --arch=*) ARCH="${1#--arch=}"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "layer.zip.sh: unknown argument '$1' (use --arch x86_64|arm64)" >&2; exit 2 ;;
  esac
done
case "$ARCH" in
  x86_64|amd64) ARCH=x86_64; RUST_TARGET=x86_64-unknown-linux-gnu; SUFFIX="" ;;
  arm64|aarch64) ARCH=arm64; RUST_TARGET=aarch64-unknown-linux-gnu; SUFFIX="-arm64" ;;
  *) echo "layer.zip.sh: --arch must be x86_64 or arm64, not '$ARCH'" >&2; exit 2 ;;
esac

GLIBC_FLOOR=2.17     # what the binaries are linked against
GLIBC_CEILING=2.34   # provided.al2023's glibc: no symbol may need more
LAYER_LIMIT=$((5 * 1024 * 1024))
ZIGBUILD_VERSION=0.24.1
PYTHON="${PYTHON:-python3}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

say() { printf '==> %s\n' "$*"; }
die() { printf 'layer.zip.sh: %s\n' "$*" >&2; exit 1; }

# 1. The Rust standard library for the target.
if ! rustup target list --installed 2>/dev/null | grep -qx "$RUST_TARGET"; then
  say "installing the Rust target $RUST_TARGET"
  if ! rustup target add "$RUST_TARGET" >/dev/null 2>&1; then
    die "cannot build for $ARCH: the Rust target $RUST_TARGET is not installed and rustup cannot install it on this machine (no access to the Rust distribution server). Install it with 'rustup target add $RUST_TARGET' where that works, or build on an $ARCH host."
  fi
fi

# 2. zig, from PyPI into the project venv.
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -m ziglang version >/dev/null 2>&1; then
  say "installing zig (requirements-build.txt) into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-build.txt
fi

# 3. cargo-zigbuild.
if ! cargo-zigbuild --version >/dev/null 2>&1; then
  say "installing cargo-zigbuild $ZIGBUILD_VERSION"
  cargo install --locked --quiet cargo-zigbuild --version "$ZIGBUILD_VERSION"
fi

# 4. Build. cargo-zigbuild finds zig through `python3 -m ziglang` on PATH. The paths a
# binary would embed (panic locations in our sources, the registry's, build scripts'
# output) are mapped to fixed names, so the same commit builds the same bytes from any
# clone, target directory or home (release.sh checks it).
say "building release binaries for $RUST_TARGET (glibc $GLIBC_FLOOR)"
mkdir -p "$TARGET_DIR"
# (When several prefixes match, rustc takes the last: the target directory may lie
# inside the clone.)
REMAP="--remap-path-prefix=$PWD=/build/secrets-sidecar"
REMAP="$REMAP --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/build/cargo"
REMAP="$REMAP --remap-path-prefix=$(cd "$TARGET_DIR" && pwd)=/build/target"
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$REMAP" PATH="$PWD/.venv/bin:$PATH" cargo zigbuild --release --locked \
  -p secrets-sidecar -p weather-function --target "$RUST_TARGET.$GLIBC_FLOOR"
OUT="$TARGET_DIR/$RUST_TARGET/release"

# 5. The glibc ceiling.
highest_glibc() {
  objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1
}
for bin in secrets-sidecar secrets-sidecar-exec bootstrap; do
  [ -f "$OUT/$bin" ] || die "$OUT/$bin was not built"
  top="$(highest_glibc "$OUT/$bin")"
  [ -n "$top" ] || die "$bin: no glibc symbols found (is it dynamically linked?)"
  if [ "$(printf '%s\n%s\n' "$top" "$GLIBC_CEILING" | sort -V | tail -n 1)" != "$GLIBC_CEILING" ]; then
    die "$bin needs GLIBC_$top, newer than provided.al2023's $GLIBC_CEILING: it would not load in Lambda"
  fi
  say "$bin: highest glibc symbol GLIBC_$top (ceiling $GLIBC_CEILING)"
done

# 6. Reproducible zips.
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/layer/extensions" "$STAGE/function" dist
install -m 0755 "$OUT/secrets-sidecar" "$STAGE/layer/extensions/secrets-sidecar"
install -m 0755 "$OUT/secrets-sidecar-exec" "$STAGE/layer/secrets-sidecar-exec"
install -m 0755 "$OUT/bootstrap" "$STAGE/function/bootstrap"
find "$STAGE" -exec touch -h -d '1980-01-01 00:00:00 UTC' {} +
LAYER_ZIP="dist/layer$SUFFIX.zip"
FUNCTION_ZIP="dist/function$SUFFIX.zip"
rm -f "$LAYER_ZIP" "$FUNCTION_ZIP"
(cd "$STAGE/layer" && TZ=UTC zip -X -D -q "$OLDPWD/$LAYER_ZIP" extensions/secrets-sidecar secrets-sidecar-exec)
(cd "$STAGE/function" && TZ=UTC zip -X -D -q "$OLDPWD/$FUNCTION_ZIP" bootstrap)

# 7. Check what Lambda will see.
check_zip() {
  local zip="$1" listing entry
  shift
  listing="$(zipinfo "$zip")"
  [ "$(zipinfo -1 "$zip" | tr '\n' ' ')" = "$* " ] || die "$zip must hold exactly $*, holds: $(zipinfo -1 "$zip" | tr '\n' ' ')"
  for entry in "$@"; do
    echo "$listing" | grep -q -- "-rwxr-xr-x .* $entry\$" || die "$zip: $entry is not mode 0755"
  done
}
check_zip "$LAYER_ZIP" extensions/secrets-sidecar secrets-sidecar-exec
check_zip "$FUNCTION_ZIP" bootstrap

size() { stat -c %s "$1"; }
say "$LAYER_ZIP     $(size "$LAYER_ZIP") bytes (extensions/secrets-sidecar: $(size "$OUT/secrets-sidecar") bytes, secrets-sidecar-exec: $(size "$OUT/secrets-sidecar-exec") bytes unzipped) [$ARCH]"
say "$FUNCTION_ZIP  $(size "$FUNCTION_ZIP") bytes (bootstrap: $(size "$OUT/bootstrap") bytes unzipped) [$ARCH]"
if [ "$(size "$LAYER_ZIP")" -gt "$LAYER_LIMIT" ]; then
  echo "layer.zip.sh: warning: $LAYER_ZIP is over the 5 MB target" >&2
fi
sha256sum "$LAYER_ZIP" "$FUNCTION_ZIP"
