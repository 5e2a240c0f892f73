#!/bin/sh
# Make the `busybox:local` base image used by rbuild's tests, deterministically, from the
# static busybox of Debian's busybox-static package (apt-get install busybox-static).
#
#   testdata/make-busybox.sh OUT.tar            OCI archive with busybox:local
#   testdata/make-busybox.sh --rootfs OUT.tar   just the root file system tar (for `rbuild import`)
#
# Then: rbuild load -i OUT.tar  (or skopeo copy oci-archive:OUT.tar:busybox:local ...).
#
# Same busybox binary → same bytes → same image ID: entries sorted, numeric owners 0/0, a
# fixed mtime, fixed created times, uncompressed layer (no gzip version differences).
# Environment: BUSYBOX (default /bin/busybox), IMAGE_REF (default busybox:local).
set -eu

BUSYBOX=${BUSYBOX:-/bin/busybox}
REF=${IMAGE_REF:-busybox:local}
EPOCH=1704067200                # 2024-01-01T00:00:00Z
CREATED=2024-01-01T00:00:00Z

usage() { echo "usage: $0 [--rootfs] OUT.tar" >&2; exit 2; }
mode=oci
if [ "${1:-}" = "--rootfs" ]; then mode=rootfs; shift; fi
[ $# -eq 1 ] || usage
out=$1
[ -x "$BUSYBOX" ] || { echo "error: $BUSYBOX not found; install Debian's busybox-static (apt-get install busybox-static)" >&2; exit 1; }
case "$("$BUSYBOX" 2>&1 | head -n1)" in
  BusyBox*) ;;
  *) echo "error: $BUSYBOX is not busybox" >&2; exit 1 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/make-busybox.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
umask 022

# --- the root file system ---------------------------------------------------------------
r=$work/rootfs
mkdir -p "$r/bin" "$r/dev" "$r/etc" "$r/proc" "$r/root" "$r/sys" "$r/tmp" "$r/usr/bin" "$r/var"
cp "$BUSYBOX" "$r/bin/busybox"
chmod 0755 "$r/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  case "$applet" in
    busybox|*/*|'') ;;
    *) ln -s busybox "$r/bin/$applet" ;;
  esac
done
ln -s ../../bin/busybox "$r/usr/bin/env"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$r/etc/group"
chmod 0644 "$r/etc/passwd" "$r/etc/group"
chmod 0755 "$r" "$r/bin" "$r/dev" "$r/etc" "$r/proc" "$r/sys" "$r/usr" "$r/usr/bin" "$r/var"
chmod 0700 "$r/root"
chmod 1777 "$r/tmp"

# Deterministic tar of a directory's contents: sorted, numeric 0/0, fixed mtime, no xattrs.
dtar() { # DIR OUT
  (cd "$1" && LC_ALL=C tar --create --file="$2" --format=gnu --sort=name \
    --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner \
    --no-acls --no-xattrs --no-selinux $(LC_ALL=C ls -A))
}

if [ "$mode" = rootfs ]; then
  dtar "$r" "$work/rootfs.tar"
  mv "$work/rootfs.tar" "$out"
  exit 0
fi

# --- the OCI layout ---------------------------------------------------------------------
l=$work/layout
mkdir -p "$l/blobs/sha256"
dtar "$r" "$work/layer.tar"
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { wc -c <"$1" | tr -d ' '; }
put() { # FILE → prints hex; moves FILE into blobs
  h=$(sha "$1"); mv "$1" "$l/blobs/sha256/$h"; echo "$h"
}
layer_size=$(size "$work/layer.tar")
layer=$(put "$work/layer.tar")

case "$(uname -m)" in
  x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; armv7l|armv6l) arch=arm ;; i?86) arch=386 ;;
  ppc64le) arch=ppc64le ;; s390x) arch=s390x ;; riscv64) arch=riscv64 ;; *) arch=$(uname -m) ;;
esac
version=$("$BUSYBOX" 2>&1 | head -n1 | sed 's/ multi-call binary.*//' | tr -d '"\\')

printf '{"architecture":"%s","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"created":"%s","history":[{"created":"%s","created_by":"testdata/make-busybox.sh: %s"}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$arch" "$CREATED" "$CREATED" "$version" "$layer" >"$work/config.json"
config_size=$(size "$work/config.json")
config=$(put "$work/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$config" "$config_size" "$layer" "$layer_size" >"$work/manifest.json"
manifest_size=$(size "$work/manifest.json")
manifest=$(put "$work/manifest.json")

printf '{"imageLayoutVersion":"1.0.0"}' >"$l/oci-layout"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest" "$manifest_size" "$REF" >"$l/index.json"
chmod -R a+rX,go-w "$l"
dtar "$l" "$work/image.tar"
mv "$work/image.tar" "$out"
