#!/usr/bin/env bash
# One command on a fresh machine: install what rbuild needs, build it, make a base image,
# then build and run an example project twice (cold, then fully cached).
#
#   bash testdata/demo.sh            busybox example (seconds)
#   bash testdata/demo.sh --python   Python example: debootstrap base + pip install (about 2 min)
#
# Uses its own store root (RBUILD_ROOT, default /tmp/rbuild-demo) so it touches nothing else.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
export RBUILD_ROOT=${RBUILD_ROOT:-/tmp/rbuild-demo}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=""
  pkgs="busybox-static ca-certificates"
  [ "${1:-}" = "--python" ] && pkgs="$pkgs debootstrap"
  for p in $pkgs; do
    dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
  done
  if [ -n "$need" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
  fi
fi
(cd "$top" && cargo build --release --locked -q)
target=${CARGO_TARGET_DIR:-$top/target}
case $target in /*) ;; *) target=$top/$target ;; esac
rbuild=$target/release/rbuild

if [ "${1:-}" = "--python" ]; then
  example=$here/example-python; tag=example-python:1
  "$rbuild" images -q python:local | grep -q . || bash "$here/make-python-base.sh" "$rbuild"
else
  example=$here/example-busybox; tag=example:1
  if ! "$rbuild" images -q busybox:local | grep -q .; then
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    sh "$here/make-busybox.sh" "$tmp/busybox.tar"
    "$rbuild" load -i "$tmp/busybox.tar"
  fi
fi

echo "== cold build"
"$rbuild" build --progress=plain -t "$tag" "$example"
echo "== no-op rebuild (every step cached)"
"$rbuild" build --progress=plain -t "$tag" "$example"
echo "== history"
"$rbuild" history "$tag"
echo "== run"
"$rbuild" run --rm "$tag"
