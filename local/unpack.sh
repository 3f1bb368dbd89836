#!/usr/bin/env bash
# Unzips dist/layer.zip into local/opt (as Lambda mounts a layer at /opt) and
# dist/function.zip into local/task (Lambda's /var/task), for docker-compose.yml.
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
