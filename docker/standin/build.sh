#!/usr/bin/env bash
# Build the local stand-in for the NGC PyTorch base image (see docker/standin/Dockerfile), unless it exists.
#
#   docker/standin/build.sh [TAG]        TAG defaults to parcae-standin:bookworm-torch$TORCH_VERSION
#
# Needs root (debootstrap), a running Docker engine, debootstrap, and a Python with pip ($PYTHON) to download
# the torch wheel. Environment: TORCH_VERSION (2.13.0), PYTHON (python3), DEBIAN_MIRROR, PIP_CERT (the CA bundle
# copied into the image; default: the host's system bundle). Prints the tag on stdout when done.
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
TAG="${1:-parcae-standin:bookworm-torch${TORCH_VERSION}}"
PYTHON="${PYTHON:-python3}"
SUITE=bookworm
PY_ABI=cp311 # bookworm's python3
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "[standin] $*" >&2; }

if docker image inspect "$TAG" >/dev/null 2>&1; then
    log "$TAG exists"
    echo "$TAG"
    exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/parcae-standin.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs_tag="${TAG%%:*}-rootfs:${TAG#*:}"

if ! docker image inspect "$rootfs_tag" >/dev/null 2>&1; then
    log "debootstrap $SUITE (minbase + python3) from $MIRROR"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
        tail -20 "$work/debootstrap.log" >&2
        exit 1
    }
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
    log "importing the root filesystem as $rootfs_tag"
    tar -C "$work/rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$rootfs_tag" >/dev/null
    rm -rf "$work/rootfs"
fi

log "downloading torch==$TORCH_VERSION and its dependencies for $PY_ABI"
mkdir -p "$work/context/wheels"
"$PYTHON" -m pip download --quiet --dest "$work/context/wheels" --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi "$PY_ABI" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform linux_x86_64 --platform any \
    "torch==$TORCH_VERSION"
cp "$CA_BUNDLE" "$work/context/ca-bundle.crt"
cp "$HERE/Dockerfile" "$work/context/Dockerfile"

log "building $TAG"
docker build --quiet --build-arg "ROOTFS_IMAGE=$rootfs_tag" -t "$TAG" "$work/context" >/dev/null
echo "$TAG"
