#!/usr/bin/env python3
"""Publishes the secrets-sidecar layer from a release directory to AWS Lambda, one layer
version per region and architecture, and prints the ARN table (Markdown) for the README.

  .venv/bin/python deploy/publish-layer.py --regions us-east-1,eu-west-1 [--public]

What it does, in order:
  1. Reads SHA256SUMS in the release directory (`make release` writes it) and checks every
     layer zip it will publish against it. A missing zip, a zip SHA256SUMS does not list,
     or a checksum that does not match stops everything: nothing is published anywhere.
  2. For each region and architecture: if the layer's latest version already carries this
     zip's SHA-256 in its description, it is left as it is ("unchanged"); otherwise
     PublishLayerVersion uploads it (compatible architecture, runtimes, license, and
     "secrets-sidecar V (arch) sha256:HEX" as the description). With --public,
     AddLayerVersionPermission lets every account use the version (lambda:GetLayerVersion
     for principal *), once: a version that holds the grant already is left alone.
  3. A region that fails is reported and the others carry on, so one bad region does not
     hold up the rest; the exit status is then 1. Rerunning finishes the job: what was
     published is found unchanged, what was missing is published.

Layer names: NAME for x86_64 and NAME-arm64 (NAME is --layer-name, default
secrets-sidecar). Credentials and the endpoint come from the usual AWS variables and
profiles; --endpoint-url points at another endpoint (a local emulator in the tests).
Progress goes to stderr; stdout holds only the table.
"""

import argparse
import hashlib
import json
import os
import re
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

ARCHS = ("x86_64", "arm64")
# The runtimes an extension layer serves today (Lambda accepts at most 15).
RUNTIMES = [
    "provided.al2023",
    "provided.al2",
    "nodejs22.x",
    "nodejs20.x",
    "python3.13",
    "python3.12",
    "python3.11",
    "java21",
    "java17",
    "dotnet8",
    "ruby3.3",
]
LICENSE = "MIT"
PUBLIC_STATEMENT = "secrets-sidecar-public-get"
ZIP_NAME = re.compile(r"^secrets-sidecar-(?P<version>[0-9][0-9A-Za-z.+-]*)-layer-(?P<arch>x86_64|arm64)\.zip$")


class Refused(Exception):
    """Input that stops the run before anything is published."""


def log(message):
    print(message, file=sys.stderr, flush=True)


def read_sums(dist):
    path = os.path.join(dist, "SHA256SUMS")
    if not os.path.isfile(path):
        raise Refused(f"{path} is missing: run `make release` (or point --dist at a release directory)")
    sums = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            m = re.fullmatch(r"([0-9a-f]{64}) [ *]?(\S+)", line)
            if not m:
                raise Refused(f"{path}:{number}: not a sha256sum line: {line[:80]!r}")
            sums[m.group(2)] = m.group(1)
    return sums


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_layers(dist, archs, version):
    """The layer zip per architecture, checked against SHA256SUMS: {arch: (path, version, sha)}."""
    sums = read_sums(dist)
    listed = {}
    for name in sums:
        m = ZIP_NAME.match(name)
        if m and (version is None or m.group("version") == version):
            listed.setdefault(m.group("arch"), []).append((name, m.group("version")))
    found = {}
    problems = []
    for arch in archs:
        candidates = listed.get(arch, [])
        if not candidates:
            wanted = f"secrets-sidecar-{version or 'V'}-layer-{arch}.zip"
            problems.append(f"SHA256SUMS lists no {wanted}")
            continue
        if len(candidates) > 1:
            versions = ", ".join(sorted(v for _, v in candidates))
            problems.append(f"SHA256SUMS lists several {arch} layers ({versions}): choose one with --version")
            continue
        name, ver = candidates[0]
        path = os.path.join(dist, name)
        if not os.path.isfile(path):
            problems.append(f"{path} is missing (SHA256SUMS lists it)")
            continue
        actual = sha256_of(path)
        if actual != sums[name]:
            problems.append(f"{path}: SHA-256 {actual} does not match SHA256SUMS ({sums[name]})")
            continue
        found[arch] = (path, ver, actual)
    versions = {ver for _, ver, _ in found.values()}
    if len(versions) > 1:
        problems.append(f"the architectures' layers have different versions ({', '.join(sorted(versions))})")
    if problems:
        raise Refused("; ".join(problems))
    return found


def layer_name(base, arch):
    return base if arch == "x86_64" else f"{base}-{arch}"


def latest_version(client, name):
    """The newest version of layer `name`, or None."""
    newest = None
    marker = None
    while True:
        kwargs = {"LayerName": name}
        if marker:
            kwargs["Marker"] = marker
        page = client.list_layer_versions(**kwargs)
        for v in page.get("LayerVersions", []):
            if newest is None or v["Version"] > newest["Version"]:
                newest = v
        marker = page.get("NextMarker")
        if not marker:
            return newest


def granted_public(client, name, number):
    """Whether the version already holds this script's public grant."""
    try:
        policy = client.get_layer_version_policy(LayerName=name, VersionNumber=number)["Policy"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise
    return any(s.get("Sid") == PUBLIC_STATEMENT for s in json.loads(policy).get("Statement", []))


def grant_public(client, name, number):
    # Looked up first, so a rerun adds nothing; a grant made in between by another run
    # is refused by Lambda as a conflict, which is the same outcome.
    if granted_public(client, name, number):
        return
    try:
        client.add_layer_version_permission(
            LayerName=name,
            VersionNumber=number,
            StatementId=PUBLIC_STATEMENT,
            Action="lambda:GetLayerVersion",
            Principal="*",
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ResourceConflictException":
            raise


def publish_one(client, region, arch, base, zip_path, version, sha, public):
    """Publishes (or finds) one layer version; returns (arn, 'published' | 'unchanged')."""
    name = layer_name(base, arch)
    marker = f"sha256:{sha}"
    latest = latest_version(client, name)
    if latest is not None and marker in latest.get("Description", ""):
        arn, number, outcome = latest["LayerVersionArn"], latest["Version"], "unchanged"
    else:
        with open(zip_path, "rb") as f:
            content = f.read()
        out = client.publish_layer_version(
            LayerName=name,
            Description=f"secrets-sidecar {version} ({arch}) {marker}",
            Content={"ZipFile": content},
            CompatibleArchitectures=[arch],
            CompatibleRuntimes=RUNTIMES,
            LicenseInfo=LICENSE,
        )
        arn, number, outcome = out["LayerVersionArn"], out["Version"], "published"
    if public:
        grant_public(client, name, number)
    log(f"{region} {arch}: {outcome} {arn}")
    return arn, outcome


def table(regions, archs, arns):
    lines = ["| Region | " + " | ".join(f"{a} ARN" for a in archs) + " |"]
    lines.append("| --- |" + " --- |" * len(archs))
    for region in regions:
        cells = [f"`{arns[(region, a)]}`" if (region, a) in arns else "(failed)" for a in archs]
        lines.append(f"| {region} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Publish the secrets-sidecar layer per region and architecture; print the ARN table.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("--dist", default="dist/release", help="release directory with SHA256SUMS (default: dist/release)")
    p.add_argument("--regions", required=True, help="comma-separated regions, e.g. us-east-1,eu-west-1")
    p.add_argument("--arch", default=",".join(ARCHS), help="comma-separated architectures (default: x86_64,arm64)")
    p.add_argument("--version", help="the release version to publish when the directory holds several")
    p.add_argument("--layer-name", default="secrets-sidecar", help="layer name; arm64 gets -arm64 (default: secrets-sidecar)")
    p.add_argument("--public", action="store_true", help="let every AWS account use the published versions")
    p.add_argument("--endpoint-url", help="Lambda endpoint (default: AWS's, or AWS_ENDPOINT_URL_LAMBDA)")
    args = p.parse_args(argv)
    args.regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    args.arch = [a.strip() for a in args.arch.split(",") if a.strip()]
    if not args.regions:
        p.error("--regions names no region")
    for region in args.regions:
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]+", region):
            p.error(f"--regions: {region!r} is not a region name")
    for arch in args.arch:
        if arch not in ARCHS:
            p.error(f"--arch: {arch!r} is not one of {', '.join(ARCHS)}")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,130}", args.layer_name):
        p.error("--layer-name: letters, digits, - and _ only")
    return args


def main(argv):
    args = parse_args(argv)
    try:
        layers = find_layers(args.dist, args.arch, args.version)
    except Refused as e:
        log(f"publish-layer: {e}. Nothing was published.")
        return 2
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60)
    arns = {}
    failed = []
    for region in args.regions:
        client = boto3.client("lambda", region_name=region, endpoint_url=args.endpoint_url, config=config)
        for arch in args.arch:
            path, version, sha = layers[arch]
            try:
                arns[(region, arch)], _ = publish_one(
                    client, region, arch, args.layer_name, path, version, sha, args.public
                )
            except (ClientError, BotoCoreError) as e:
                log(f"{region} {arch}: FAILED: {e}")
                failed.append(f"{region} ({arch})")
    print(table(args.regions, args.arch, arns))
    if failed:
        log(f"publish-layer: failed in {', '.join(failed)}; the rest is published. Rerun to finish.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
