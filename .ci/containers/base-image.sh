#!/usr/bin/env bash
# Builds a Python 3.11 base image from Debian packages alone (no image registry needed):
# debootstrap of Debian bookworm (its python3 is 3.11) with python3 and python3-venv, imported with `podman import`.
# The catalog's Dockerfiles then build FROM it with `--build-arg BASE_IMAGE=<this tag>`.
#
# usage: base-image.sh [TAG]    (default localhost/kfp-ct-base:bookworm)
# env:   ENGINE (podman or docker; default: whichever is installed), KFP_CT_PODMAN_HOME (work folder),
#        DEBIAN_MIRROR (default http://deb.debian.org/debian), REBUILD=1 to rebuild when the tag exists.
set -euo pipefail
TAG="${1:-localhost/kfp-ct-base:bookworm}"
ENGINE="${ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}"
WORK="${KFP_CT_PODMAN_HOME:-/var/tmp/kfp-ct-podman}/base"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ "${REBUILD:-0}" != 1 ] && "$ENGINE" image inspect "$TAG" >/dev/null 2>&1; then
    echo "base image $TAG exists (REBUILD=1 to rebuild)"; exit 0
fi
if ! command -v debootstrap >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
fi

mkdir -p "$WORK"
ROOTFS="$WORK/rootfs"
rm -rf "$ROOTFS" "$WORK/rootfs.tar"
# minbase: essential packages and apt only; python3-venv brings ensurepip (pip and setuptools wheels) for venvs.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" "$MIRROR"

# Slim it the way python:3.11-slim is slimmed: no apt lists, caches, docs, man pages or locales beyond C.
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/*.log \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/* \
       "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
find "$ROOTFS/usr/lib/python3.11" -name __pycache__ -prune -exec rm -rf {} +
# `python` as in python:3.11-slim, so the same Dockerfile runs on either base.
ln -sf python3 "$ROOTFS/usr/bin/python"

tar --numeric-owner -C "$ROOTFS" -cf "$WORK/rootfs.tar" .
"$ENGINE" import \
    --change 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV=LANG=C.UTF-8' \
    --change 'CMD=["python3"]' \
    --message "Debian bookworm minbase + python3 (3.11), python3-venv, ca-certificates" \
    "$WORK/rootfs.tar" "$TAG"
rm -rf "$ROOTFS" "$WORK/rootfs.tar"
"$ENGINE" image inspect --format '{{.Size}}' "$TAG" | awk -v t="$TAG" '{printf "base image %s: %.0f MB\n", t, $1/1e6}'
