#!/usr/bin/env bash
# Unzips dist/layer.zip into local/opt (as Lambda mounts a layer at /opt) and
# dist/function.zip into local/task (Lambda's /var/task), and builds the fake weather
# providers into local/bin (glibc 2.17, with the cargo-zigbuild and zig that
# layer.zip.sh installed), for docker-compose.yml.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
for z in layer function; do
  [ -f "$root/dist/$z.zip" ] || { echo "dist/$z.zip is missing: run ./layer.zip.sh first" >&2; exit 1; }
done
rm -rf "$here/opt" "$here/task"
mkdir -p "$here/opt" "$here/task"
unzip -q "$root/dist/layer.zip" -d "$here/opt"
unzip -q "$root/dist/function.zip" -d "$here/task"
echo "unpacked: $(ls "$here/opt/extensions") in local/opt/extensions, bootstrap in local/task"

case "$(uname -m)" in
  x86_64|amd64) target=x86_64-unknown-linux-gnu ;;
  arm64|aarch64) target=aarch64-unknown-linux-gnu ;;
  *) echo "no fake providers for $(uname -m)" >&2; exit 1 ;;
esac
cd "$root"
PATH="$root/.venv/bin:$PATH" cargo zigbuild --release --locked -q -p harness --bin fake-providers --target "$target.2.17"
mkdir -p "$here/bin"
cp "${CARGO_TARGET_DIR:-target}/$target/release/fake-providers" "$here/bin/fake-providers"
echo "built the fake providers into local/bin"
