#!/usr/bin/env bash
# Builds a release: for each architecture, the Lambda layer and a standalone tarball
# (ECS, EKS, EC2), a CycloneDX SBOM per artifact, and SHA256SUMS over all of them:
#
#   dist/release/secrets-sidecar-V-layer-x86_64.zip          the layer (layer.zip.sh)
#   dist/release/secrets-sidecar-V-linux-x86_64.tar.gz       secrets-sidecar-V-linux-x86_64/
#                                                            {secrets-sidecar, secrets-sidecar-exec,
#                                                             LICENSE, CHANGELOG.md}
#   dist/release/<artifact>.cdx.json                         CycloneDX 1.5 SBOM of the binaries
#   dist/release/SHA256SUMS                                  `sha256sum -c SHA256SUMS` checks them
#   (the same for arm64)
#
# V is the workspace version in Cargo.toml; the binaries report it and the commit with
# `secrets-sidecar --version`. Reproducible: the same commit gives byte-identical
# artifacts from any clone or target directory (layer.zip.sh maps embedded paths; the
# zips and tarballs have fixed times, owners, modes and order; the SBOMs a fixed time
# and no machine paths). Refuses a tree with uncommitted changes, whose artifacts would
# name a commit they were not built from (ALLOW_DIRTY=1 overrides, for tests).
# Installs what it needs when missing: cargo-cyclonedx (crates.io), and through
# layer.zip.sh cargo-zigbuild, zig and the Rust targets.
#
#   ./release.sh                          # x86_64 and arm64 into dist/release
#   ./release.sh --arch x86_64            # one architecture
#   ./release.sh --out DIR                # elsewhere
set -euo pipefail
cd "$(dirname "$0")"

ARCHS=()
OUT_DIR=dist/release
CYCLONEDX_VERSION=0.5.9
# 1980-01-01T00:00:00Z: the earliest time a zip can hold, used for every artifact.
EPOCH=315532800

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'release.sh: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --arch) [ $# -ge 2 ] || die "--arch needs a value (x86_64 or arm64)"; ARCHS+=("$2"); shift 2 ;;
    --arch=*) ARCHS+=("${1#--arch=}"); shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; OUT_DIR="$2"; shift 2 ;;
    --out=*) OUT_DIR="${1#--out=}"; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (use --arch x86_64|arm64, --out DIR)" ;;
  esac
done
[ ${#ARCHS[@]} -gt 0 ] || ARCHS=(x86_64 arm64)
for arch in "${ARCHS[@]}"; do
  case "$arch" in
    x86_64|arm64) ;;
    *) die "--arch must be x86_64 or arm64, not '$arch'" ;;
  esac
done

VERSION="$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)"
[ -n "$VERSION" ] || die "no version in Cargo.toml's [workspace.package]"
COMMIT="$(git rev-parse HEAD 2>/dev/null)" || die "not a git checkout: the release must name its commit"
if [ -n "$(git status --porcelain --untracked-files=no)" ] && [ "${ALLOW_DIRTY:-}" != 1 ]; then
  die "the tree has uncommitted changes; commit them first (or ALLOW_DIRTY=1 for a build that is not a release)"
fi
export SECRETS_SIDECAR_COMMIT="$COMMIT"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

if ! cargo cyclonedx --version 2>/dev/null | grep -q "$CYCLONEDX_VERSION"; then
  say "installing cargo-cyclonedx $CYCLONEDX_VERSION"
  cargo install --locked --quiet cargo-cyclonedx --version "$CYCLONEDX_VERSION"
fi

STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/secrets-sidecar-"$VERSION"-* "$OUT_DIR/SHA256SUMS"

# The SBOM of the sidecar's binaries for one Rust target: every crate they link (no
# build-time dependencies), with the clone's absolute path replaced by a fixed name.
# cargo-cyclonedx writes one file per binary of the workspace beside each Cargo.toml;
# they are collected and removed.
sbom() {
  local rust_target="$1" dest="$2" made
  SOURCE_DATE_EPOCH=$EPOCH cargo cyclonedx --manifest-path extension/Cargo.toml --format json \
    --describe binaries --no-build-deps --spec-version 1.5 --target "$rust_target" -q
  made="extension/secrets-sidecar_bin.cdx.json"
  [ -f "$made" ] || die "cargo-cyclonedx wrote no $made"
  sed "s#file://$PWD#file:///build/secrets-sidecar#g" "$made" > "$dest"
  rm -f ./*/*_bin.cdx.json
}

for arch in "${ARCHS[@]}"; do
  case "$arch" in
    x86_64) rust_target=x86_64-unknown-linux-gnu; built=dist/layer.zip ;;
    arm64) rust_target=aarch64-unknown-linux-gnu; built=dist/layer-arm64.zip ;;
  esac
  say "building $arch (secrets-sidecar $VERSION, commit $COMMIT)"
  ./layer.zip.sh --arch "$arch" >&2
  bin_dir="$TARGET_DIR/$rust_target/release"

  layer="secrets-sidecar-$VERSION-layer-$arch.zip"
  cp "$built" "$OUT_DIR/$layer"

  name="secrets-sidecar-$VERSION-linux-$arch"
  mkdir -p "$STAGE/$name"
  install -m 0755 "$bin_dir/secrets-sidecar" "$bin_dir/secrets-sidecar-exec" "$STAGE/$name/"
  install -m 0644 LICENSE CHANGELOG.md "$STAGE/$name/"
  tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$STAGE" -cf - "$name" | gzip -n -9 > "$OUT_DIR/$name.tar.gz"

  sbom "$rust_target" "$STAGE/sbom.json"
  cp "$STAGE/sbom.json" "$OUT_DIR/$layer.cdx.json"
  cp "$STAGE/sbom.json" "$OUT_DIR/$name.tar.gz.cdx.json"
done

(cd "$OUT_DIR" && find . -maxdepth 1 -type f -name "secrets-sidecar-$VERSION-*" -printf '%f\n' \
  | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
say "release $VERSION ($COMMIT) in $OUT_DIR:"
(cd "$OUT_DIR" && for f in $(LC_ALL=C ls); do printf '%10d  %s\n' "$(stat -c %s "$f")" "$f"; done) >&2
cat "$OUT_DIR/SHA256SUMS"
