#!/usr/bin/env bash
# Make a small real Python base image, `python:local`, from Debian's packages and store it
# with `rbuild import` (about a minute: debootstrap minbase + python3 + python3-pip).
#
#   bash testdata/make-python-base.sh [RBUILD] [--root DIR]
#
# The network here re-signs TLS, so the host's CA bundle is copied into the image: pip
# inside RUN steps then trusts the same certificates the host does.
set -euo pipefail
rbuild=${1:-rbuild}; shift || true
suite=${SUITE:-bookworm}
mirror=${MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}

command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
work=$(mktemp -d /tmp/rbuild-python-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
  "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
fi
# Debian marks its Python "externally managed" (PEP 668); this image is a build base,
# so pip may install into it like the official python images allow.
rm -f "$work"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
tar --numeric-owner --xattrs -C "$work/rootfs" -cf "$work/rootfs.tar" .
"$rbuild" "$@" import "$work/rootfs.tar" python:local
