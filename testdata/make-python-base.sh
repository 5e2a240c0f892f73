#!/bin/sh
# Make `python:local`, a small Debian base with python3 and pip, for the README's example
# (testdata/python-example). About a minute and 250 MB from the apt mirror in
# /etc/apt/sources.list(.d); needs root and debootstrap (apt-get install debootstrap).
#
#   testdata/make-python-base.sh OUT.tar        a rootfs tar: rbuild import OUT.tar python:local
#
# The host's CA bundle is copied in, because a TLS-re-signing proxy (as on the machines this
# project is built on) would otherwise make `pip install` fail inside the build.
set -eu

out=${1:?usage: $0 OUT.tar}
suite=${SUITE:-bookworm}
mirror=${MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || { echo "error: debootstrap not found; apt-get install debootstrap" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/make-python-base.XXXXXX")
trap 'umount "$work/rootfs/proc" 2>/dev/null || true; rm -rf "$work"' EXIT INT TERM
r=$work/rootfs

debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates "$suite" "$r" "$mirror" >&2
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
fi
# Debian marks its Python as externally managed (PEP 668); an image is its own environment.
rm -f "$r"/usr/lib/python3*/EXTERNALLY-MANAGED
# Keep the image small and the tar stable: no apt lists, caches, logs.
rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb "$r"/var/log/* "$r"/tmp/*
tar --numeric-owner --sort=name -C "$r" -cf "$out" .
echo "wrote $out; now: rbuild import $out python:local" >&2
