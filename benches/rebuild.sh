#!/usr/bin/env bash
# Tool functions are called by name ("${tool}_reset" ...), which shellcheck cannot follow.
# shellcheck disable=SC2317
# Rebuild benchmark: rbuild against BuildKit (through a dockerd this script starts) and buildah.
#
# Generates a seed-shaped project (FROM busybox:local, WORKDIR /app, COPY requirements.txt .,
# RUN an "install" that reads requirements.txt and sleeps 1 s, COPY . ., CMD) with N source files
# and one data file, then measures, median of K runs, for rbuild and each peer found on PATH:
#
#   cold        a build on a fresh store (only the base image present)
#   noop        the same build again, nothing changed
#   src-edit    rebuild after editing one source file
#   req-edit    rebuild after editing requirements.txt (the install RUN runs again)
#   cache-from  a build on a fresh store with --cache-from a previous build's cache export
#
# and the peak memory (RSS) of each tool. Prints a table (median seconds, ratio rbuild/peer) on
# stdout and writes OUT.tsv (every run) and OUT.json (medians, peaks, notes).
#
# Usage: benches/rebuild.sh [--files N] [--data-mb M] [--runs K] [--tools LIST]
#                           [--scenarios LIST] [--out PREFIX] [--keep]
#   --files N         source files in the project (default 2000; env BENCH_FILES)
#   --data-mb M       size of the one data file in MB, 0 for none (default 100; env BENCH_DATA_MB)
#   --runs K          runs per scenario; the median is reported (default 5; env BENCH_RUNS)
#   --tools LIST      comma-separated subset of rbuild,buildkit,buildah (default: all; a peer
#                     that is not installed or does not start is skipped with a note; env BENCH_TOOLS)
#   --scenarios LIST  comma-separated subset of the scenarios above (default: all)
#   --out PREFIX      write PREFIX.tsv and PREFIX.json (default ./rebuild-results; env BENCH_OUT)
#   --keep            keep the temporary directory (logs, stores) and print its path
# Smoke run: benches/rebuild.sh --files 20 --data-mb 1 --runs 1 --tools rbuild
#
# Environment: RBUILD (default <repo>/target/release/rbuild, built with `cargo build --release`
# when missing), DOCKERD (default dockerd), DOCKER_CLI (default /usr/bin/docker: Debian's
# docker.io 20.10 CLI, which builds with BuildKit without buildx), BUILDAH, SKOPEO.
#
# What each tool runs (all state lives in one temporary directory, removed at the end):
#   rbuild    rbuild --root T/rbuild/root build -t bench:latest PROJ; base: rbuild load -i of the
#             OCI archive from testdata/make-busybox.sh; cache: --cache-to type=local,dest=D /
#             --cache-from type=local,src=D when `rbuild build --help` lists them, else n/a.
#   buildkit  dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2
#             with its own data-root, exec-root, socket, pidfile and config file under T, driven
#             by DOCKER_BUILDKIT=1 docker build --network=host; base: docker load of a
#             docker-archive made from the same OCI archive. Cold = builder cache pruned and the
#             built images removed. cache-from: docker 20.10 has no buildx, so no type=local cache
#             export; the export is an image built with --build-arg BUILDKIT_INLINE_CACHE=1 and
#             saved with docker save; each cache-from run starts from a pruned daemon, loads it
#             (untimed) and builds with --cache-from that image.
#   buildah   buildah --root/--runroot under T --storage-driver overlay bud --isolation chroot
#             --layers --pull=never; base imported with skopeo from the OCI archive. Cold = a
#             fresh storage root. cache-from: buildah only exports its cache to a registry; when
#             Debian's docker-registry is installed, one is started on 127.0.0.1 (storage under T)
#             and used with --cache-to/--cache-from; else n/a.
# Peak memory: GNU time's %M (max RSS) of the rbuild / buildah process (largest over the runs),
# n/a without /usr/bin/time. For BuildKit the work happens in dockerd, so its peak RSS is read
# from /proc/PID/status VmHWM after each run, the high-water mark having been reset just before
# the run by writing 5 to /proc/PID/clear_refs; the table shows that peak (which includes the
# daemon's resident baseline, also printed).
#
# Host state outside the temporary directory: none written by rbuild or dockerd (dockerd's trust
# key goes under T via its config file). dockerd creates /run/docker/plugins, BuildKit's runc
# /run/runc (empty afterwards) and skopeo/buildah their blob-info cache in
# /var/lib/containers/cache; the script removes those at the end when they did not exist before
# it started. Network: loopback only (the registry, if used).
set -euo pipefail

ALL_TOOLS=(rbuild buildkit buildah)
ALL_SCENARIOS=(cold noop src-edit req-edit cache-from)

FILES=${BENCH_FILES:-2000}
DATA_MB=${BENCH_DATA_MB:-100}
RUNS=${BENCH_RUNS:-5}
TOOLS=${BENCH_TOOLS:-rbuild,buildkit,buildah}
SCENARIOS=$(IFS=,; echo "${ALL_SCENARIOS[*]}")
OUT=${BENCH_OUT:-./rebuild-results}
KEEP=0

usage() { sed -n '/^# Usage:/,/^# Smoke run:/p' "$0" | sed 's/^# \{0,1\}//'; }
die() { printf 'rebuild.sh: %s\n' "$*" >&2; exit 2; }
say() { printf '%s\n' "$*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=${2:?--files needs a number}; shift 2 ;;
    --data-mb) DATA_MB=${2:?--data-mb needs a number}; shift 2 ;;
    --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
    --tools) TOOLS=${2:?--tools needs a list}; shift 2 ;;
    --scenarios) SCENARIOS=${2:?--scenarios needs a list}; shift 2 ;;
    --out) OUT=${2:?--out needs a path prefix}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
for n in "$FILES" "$DATA_MB" "$RUNS"; do
  case "$n" in ''|*[!0-9]*) die "'$n' is not a whole number; see --help" ;; esac
done
[ "$RUNS" -ge 1 ] || die "--runs must be at least 1"
IFS=, read -r -a WANT_TOOLS <<<"$TOOLS"
IFS=, read -r -a WANT_SCEN <<<"$SCENARIOS"
for t in "${WANT_TOOLS[@]}"; do
  case " ${ALL_TOOLS[*]} " in *" $t "*) ;; *) die "unknown tool '$t' (known: ${ALL_TOOLS[*]})" ;; esac
done
for s in "${WANT_SCEN[@]}"; do
  case " ${ALL_SCENARIOS[*]} " in *" $s "*) ;; *) die "unknown scenario '$s' (known: ${ALL_SCENARIOS[*]})" ;; esac
done
want_scen() { case " ${WANT_SCEN[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
RBUILD=${RBUILD:-$REPO/target/release/rbuild}
DOCKERD=${DOCKERD:-dockerd}
DOCKER_CLI=${DOCKER_CLI:-/usr/bin/docker}
BUILDAH=${BUILDAH:-buildah}
SKOPEO=${SKOPEO:-skopeo}
GNU_TIME=
if [ -x /usr/bin/time ] && /usr/bin/time -f %M -o /dev/null true 2>/dev/null; then GNU_TIME=/usr/bin/time; fi

# --- host state we may have to undo --------------------------------------------------------
HAD_VLC=0; [ -e /var/lib/containers ] && HAD_VLC=1
HAD_RUN_DOCKER=0; [ -e /run/docker ] && HAD_RUN_DOCKER=1
HAD_RUN_RUNC=0; [ -e /run/runc ] && HAD_RUN_RUNC=1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rbb.XXXXXX")
mkdir -p "$WORK/tmp" "$WORK/logs"
export TMPDIR=$WORK/tmp
DOCKERD_PID=
REGISTRY_PID=

# Unmount everything mounted at or below DIR, deepest first.
umount_under() {
  local d=$1 m
  awk -v d="$d" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

# Stop PID with SIGTERM, then SIGKILL after SECS seconds.
stop_pid() {
  local pid=$1 secs=$2 i=0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt $((secs * 10)) ]; do sleep 0.1; i=$((i + 1)); done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

stop_dockerd() {
  [ -n "$DOCKERD_PID" ] || return 0
  local kids
  kids=$(ps -o pid= --ppid "$DOCKERD_PID" 2>/dev/null || true)
  stop_pid "$DOCKERD_PID" 20
  for k in $kids; do stop_pid "$k" 5; done   # a managed containerd left behind by a SIGKILL
  DOCKERD_PID=
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  stop_dockerd
  [ -n "$REGISTRY_PID" ] && stop_pid "$REGISTRY_PID" 5
  if [ -d "$WORK/buildah/root" ]; then
    "$BUILDAH" --root "$WORK/buildah/root" --runroot "$WORK/buildah/run" rm -a >/dev/null 2>&1
  fi
  umount_under "$WORK"
  if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
  if [ "$HAD_VLC" = 0 ] && [ -d /var/lib/containers ]; then
    rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
    rmdir /var/lib/containers/cache /var/lib/containers 2>/dev/null
  fi
  if [ "$HAD_RUN_DOCKER" = 0 ] && [ -d /run/docker ]; then
    rmdir /run/docker/plugins /run/docker 2>/dev/null
  fi
  if [ "$HAD_RUN_RUNC" = 0 ] && [ -d /run/runc ]; then rmdir /run/runc 2>/dev/null; fi  # only if empty
  exit "$rc"
}
trap cleanup EXIT
trap 'say "rebuild.sh: interrupted"; exit 130' INT
trap 'exit 143' TERM

# --- results -----------------------------------------------------------------------------
declare -A TIMES=() PEAK=() NA=() STATUS=() NOTE=() VERSION=() MEMHOW=()
printf 'tool\tscenario\trun\tseconds\tpeak_rss_kb\n' >"$WORK/runs.tsv"

median() { # numbers... → median with 3 decimals, or n/a
  [ $# -gt 0 ] || { echo n/a; return; }
  printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
    END { if (NR % 2) printf "%.3f\n", a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# run_timed LOG CMD... → T_SEC (seconds, ms resolution), T_RSS_KB (GNU time %M or empty);
# returns the command's exit status.
run_timed() {
  local log=$1 t0 t1 ms rc=0
  shift
  rm -f "$WORK/rss"
  t0=$(date +%s%N)
  if [ -n "$GNU_TIME" ]; then
    "$GNU_TIME" -f %M -o "$WORK/rss" "$@" >"$log" 2>&1 </dev/null || rc=$?
  else
    "$@" >"$log" 2>&1 </dev/null || rc=$?
  fi
  t1=$(date +%s%N)
  ms=$(((t1 - t0) / 1000000))
  T_SEC=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
  T_RSS_KB=
  if [ -s "$WORK/rss" ]; then T_RSS_KB=$(tail -n1 "$WORK/rss" | tr -dc 0-9); fi
  return "$rc"
}

# Run a setup command quietly; on failure show its log's tail.
quiet() { # LOG CMD...
  local log=$1
  shift
  if "$@" >"$log" 2>&1 </dev/null; then return 0; fi
  say "  command failed: $*"
  tail -n 15 "$log" | sed 's/^/    | /' >&2
  return 1
}

# --- the project -------------------------------------------------------------------------
PRISTINE=$WORK/pristine
make_project() {
  local p=$PRISTINE i dir
  mkdir -p "$p/src" "$p/data"
  cat >"$p/Dockerfile" <<'EOF'
FROM busybox:local
WORKDIR /app
COPY requirements.txt .
RUN mkdir -p /opt/deps && while read -r req; do echo "installing $req"; echo "$req" >>/opt/deps/installed.txt; done <requirements.txt && sleep 1
COPY . .
CMD ["sh", "-c", "cat /opt/deps/installed.txt && ls /app"]
EOF
  for i in attrs==23.1.0 certifi==2023.7.22 charset-normalizer==3.2.0 click==8.1.7 \
    flask==2.3.3 idna==3.4 itsdangerous==2.1.2 jinja2==3.1.2 markupsafe==2.1.3 \
    packaging==23.1 pyyaml==6.0.1 requests==2.31.0 six==1.16.0 urllib3==2.0.4 werkzeug==2.3.7; do
    printf '%s\n' "$i"
  done >"$p/requirements.txt"
  printf '# rbuild rebuild benchmark project\n' >"$p/README.md"
  for ((i = 0; i < FILES; i++)); do
    dir=$p/src/pkg_$(printf '%03d' $((i / 100)))
    [ -d "$dir" ] || mkdir -p "$dir"
    printf '"""Generated module %d of the benchmark project."""\n\nimport os\nimport sys\n\nVALUE_%d = %d\n\n\ndef compute_%d(x, y=1):\n    """Return a value that depends on the module number."""\n    total = 0\n    for k in range(x):\n        total += (k * %d + y) %% 7919\n    return total + VALUE_%d\n\n\nclass Handler%d:\n    name = "handler-%d"\n\n    def run(self, argv):\n        return compute_%d(len(argv)) if argv else os.getpid() + len(sys.path)\n' \
      "$i" "$i" "$i" "$i" "$i" "$i" "$i" "$i" "$i" >"$dir/mod_$(printf '%04d' "$i").py"
  done
  if [ "$DATA_MB" -gt 0 ]; then
    head -c $((DATA_MB * 1024 * 1024)) /dev/urandom >"$p/data/blob.bin"
  fi
}
SRC_EDIT_FILE=src/pkg_000/mod_0000.py

# busybox:local as an OCI archive (rbuild, skopeo) and as a docker-archive (docker load 20.10).
BB_OCI=$WORK/busybox.oci.tar
BB_DOCKER=$WORK/busybox.docker.tar
make_base() {
  sh "$REPO/testdata/make-busybox.sh" "$BB_OCI"
}
oci_to_docker_archive() { # OCI_TAR OUT_TAR REPO_TAG
  local d=$WORK/conv m c l layers=() entries=""
  rm -rf "$d"
  mkdir -p "$d/oci" "$d/out"
  tar -xf "$1" -C "$d/oci"
  m=$(grep -o '"digest": *"sha256:[0-9a-f]\{64\}"' "$d/oci/index.json" | head -n1 | grep -o '[0-9a-f]\{64\}')
  mapfile -t layers < <(grep -o '"digest": *"sha256:[0-9a-f]\{64\}"' "$d/oci/blobs/sha256/$m" | grep -o '[0-9a-f]\{64\}')
  c=${layers[0]}
  cp "$d/oci/blobs/sha256/$c" "$d/out/$c.json"
  for l in "${layers[@]:1}"; do
    mkdir -p "$d/out/$l"
    cp "$d/oci/blobs/sha256/$l" "$d/out/$l/layer.tar"
    entries="$entries${entries:+,}\"$l/layer.tar\""
  done
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":[%s]}]\n' "$c" "$3" "$entries" >"$d/out/manifest.json"
  tar -cf "$2" -C "$d/out" .
  rm -rf "$d"
}

# --- rbuild --------------------------------------------------------------------------------
RB=$WORK/rbuild
RB_CACHE_OK=0
rbuild_start() {
  if [ ! -x "$RBUILD" ]; then
    if [ "$RBUILD" = "$REPO/target/release/rbuild" ] && command -v cargo >/dev/null; then
      say "  building $RBUILD (cargo build --release)"
      (cd "$REPO" && cargo build --release) >"$WORK/logs/cargo.log" 2>&1 ||
        { tail -n 20 "$WORK/logs/cargo.log" >&2; NOTE[rbuild]="cargo build --release failed"; return 1; }
    else
      NOTE[rbuild]="no executable at RBUILD=$RBUILD"
      return 1
    fi
  fi
  VERSION[rbuild]=$("$RBUILD" --version 2>/dev/null | head -n1 || echo unknown)
  local help
  help=$("$RBUILD" build --help 2>&1 || true)
  if grep -q -- '--cache-to' <<<"$help" && grep -q -- '--cache-from' <<<"$help"; then
    RB_CACHE_OK=1
  fi
  MEMHOW[rbuild]=${GNU_TIME:+"GNU time %M of the rbuild process"}
  mkdir -p "$RB"
}
rbuild_stop() { :; }
rbuild_reset() {
  umount_under "$RB/root"
  rm -rf "$RB/root"
  quiet "$WORK/logs/rbuild-load.log" "$RBUILD" --root "$RB/root" load -i "$BB_OCI"
}
rbuild_cmd() { CMD=("$RBUILD" --root "$RB/root" build -t bench:latest); }
rbuild_cache_supported() {
  [ "$RB_CACHE_OK" = 1 ] && return 0
  NA[rbuild/cache-from]="rbuild build has no --cache-to/--cache-from yet"
  return 1
}
rbuild_cache_export_args() { CMD+=(--cache-to "type=local,dest=$RB/cache"); }
rbuild_cache_saved() { :; }
rbuild_cache_restore() { :; }
rbuild_cache_import_args() { CMD+=(--cache-from "type=local,src=$RB/cache"); }
rbuild_mem_before() { :; }
rbuild_mem_after() { :; }

# --- BuildKit through dockerd ----------------------------------------------------------------
DK=$WORK/dk
dk() { "$DOCKER_CLI" "$@"; }
buildkit_start() {
  if ! command -v "$DOCKERD" >/dev/null; then NOTE[buildkit]="no dockerd on PATH (apt-get install docker.io)"; return 1; fi
  if [ ! -x "$DOCKER_CLI" ]; then NOTE[buildkit]="no docker CLI at $DOCKER_CLI (Debian's docker.io)"; return 1; fi
  mkdir -p "$DK/cli"
  printf '{"deprecated-key-path": "%s/key.json"}\n' "$DK" >"$DK/daemon.json"
  export DOCKER_HOST=unix://$DK/docker.sock DOCKER_CONFIG=$DK/cli DOCKER_BUILDKIT=1
  "$DOCKERD" --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
    --data-root "$DK/data" --exec-root "$DK/exec" -H "unix://$DK/docker.sock" \
    --pidfile "$DK/docker.pid" --config-file "$DK/daemon.json" >"$DK/dockerd.log" 2>&1 </dev/null &
  DOCKERD_PID=$!
  local i=0
  until dk version >/dev/null 2>&1; do
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null || [ "$i" -ge 300 ]; then
      local why
      why=$(grep -v '^$' "$DK/dockerd.log" | tail -n1 | cut -c1-200 || true)
      NOTE[buildkit]="dockerd did not start: ${why:-it exited without a message}"
      stop_dockerd
      return 1
    fi
    sleep 0.1
    i=$((i + 1))
  done
  VERSION[buildkit]="dockerd $(dk version --format '{{.Server.Version}}' 2>/dev/null), $(dk info --format '{{.Driver}}' 2>/dev/null)"
  oci_to_docker_archive "$BB_OCI" "$BB_DOCKER" busybox:local
  quiet "$WORK/logs/docker-load.log" dk load -i "$BB_DOCKER" || { NOTE[buildkit]="docker load of the base failed"; return 1; }
  DK_BASE_KB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$DOCKERD_PID/status")
  MEMHOW[buildkit]="dockerd VmHWM per run (reset via /proc/PID/clear_refs before each run); dockerd RSS after start + base load: $((DK_BASE_KB / 1024)) MB"
}
buildkit_stop() { stop_dockerd; }
buildkit_reset() {
  dk image rm -f bench:latest bench:cache >/dev/null 2>&1 || true
  quiet "$WORK/logs/docker-prune.log" dk builder prune -af &&
    quiet "$WORK/logs/docker-prune.log" dk image prune -f
}
buildkit_cmd() { CMD=("$DOCKER_CLI" build --network=host --progress=plain -t bench:latest); }
buildkit_cache_supported() { return 0; }
buildkit_cache_export_args() { CMD+=(--build-arg BUILDKIT_INLINE_CACHE=1 -t bench:cache); }
buildkit_cache_saved() { quiet "$WORK/logs/docker-save.log" dk save -o "$DK/cache.tar" bench:cache; }
buildkit_cache_restore() { quiet "$WORK/logs/docker-load.log" dk load -i "$DK/cache.tar"; }
buildkit_cache_import_args() { CMD+=(--cache-from bench:cache); }
buildkit_mem_before() { echo 5 >"/proc/$DOCKERD_PID/clear_refs" 2>/dev/null || true; }
buildkit_mem_after() { T_RSS_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DOCKERD_PID/status" 2>/dev/null || true); }

# --- buildah ---------------------------------------------------------------------------------
BH=$WORK/buildah
BH_REG=
bh() { "$BUILDAH" --root "$BH/root" --runroot "$BH/run" --storage-driver overlay "$@"; }
buildah_start() {
  if ! command -v "$BUILDAH" >/dev/null; then NOTE[buildah]="no buildah on PATH (apt-get install buildah)"; return 1; fi
  if ! command -v "$SKOPEO" >/dev/null; then NOTE[buildah]="no skopeo on PATH to import the base (apt-get install skopeo)"; return 1; fi
  mkdir -p "$BH"
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/root"\nrunroot = "%s/run"\n' "$BH" "$BH" >"$BH/storage.conf"
  export CONTAINERS_STORAGE_CONF=$BH/storage.conf
  VERSION[buildah]=$("$BUILDAH" --version 2>/dev/null | head -n1)
  MEMHOW[buildah]=${GNU_TIME:+"GNU time %M of the buildah process"}
  if ! bh info >"$WORK/logs/buildah-info.log" 2>&1; then
    NOTE[buildah]="buildah info failed: $(tail -n1 "$WORK/logs/buildah-info.log" | cut -c1-200)"
    return 1
  fi
}
buildah_stop() {
  [ -d "$BH/root" ] && bh rm -a >/dev/null 2>&1
  [ -n "$REGISTRY_PID" ] && stop_pid "$REGISTRY_PID" 5
  REGISTRY_PID=
  return 0
}
buildah_reset() {
  if [ -d "$BH/root" ]; then bh rm -a >/dev/null 2>&1 || true; fi
  umount_under "$BH"
  rm -rf "$BH/root" "$BH/run"
  quiet "$WORK/logs/skopeo.log" "$SKOPEO" copy "oci-archive:$BB_OCI:busybox:local" \
    "containers-storage:[overlay@$BH/root+$BH/run]docker.io/library/busybox:local"
}
buildah_cmd() { CMD=("$BUILDAH" --root "$BH/root" --runroot "$BH/run" --storage-driver overlay bud --isolation chroot --layers --pull=never -t bench:latest); }
# buildah exports its layer cache only to a registry repository: start Debian's docker-registry
# on a free loopback port with its storage under the temporary directory.
buildah_cache_supported() {
  if ! bh bud --help 2>/dev/null | grep -q -- '--cache-to'; then
    NA[buildah/cache-from]="this buildah has no --cache-to/--cache-from"
    return 1
  fi
  local reg
  reg=$(command -v docker-registry || true)
  [ -z "$reg" ] && [ -x /usr/bin/docker-registry ] && reg=/usr/bin/docker-registry
  if [ -z "$reg" ]; then
    NA[buildah/cache-from]="buildah caches only to a registry; install docker-registry for a loopback one"
    return 1
  fi
  local port i
  for ((i = 0; i < 20; i++)); do  # a port nothing listens on yet
    port=$(awk -v s="$RANDOM" 'BEGIN { srand(s); print 20000 + int(rand() * 20000) }')
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  done
  mkdir -p "$BH/registry"
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s/registry\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$BH" "$port" >"$BH/registry.yml"
  "$reg" serve "$BH/registry.yml" >"$WORK/logs/registry.log" 2>&1 </dev/null &
  REGISTRY_PID=$!
  for ((i = 0; i < 100; i++)); do
    kill -0 "$REGISTRY_PID" 2>/dev/null || break
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then BH_REG=127.0.0.1:$port/bench-cache; return 0; fi
    sleep 0.1
  done
  NA[buildah/cache-from]="the loopback docker-registry did not start (see its log)"
  stop_pid "$REGISTRY_PID" 5
  REGISTRY_PID=
  return 1
}
buildah_cache_export_args() { CMD+=(--cache-to "$BH_REG" --tls-verify=false); }
buildah_cache_saved() { :; }
buildah_cache_restore() { :; }
buildah_cache_import_args() { CMD+=(--cache-from "$BH_REG" --tls-verify=false); }
buildah_mem_before() { :; }
buildah_mem_after() { :; }

# --- the driver ------------------------------------------------------------------------------
# measure TOOL SCENARIO RUN [extra-args-fn] → records one timed build; fails on a failed build.
# TOOL_cmd puts the build command without its context into CMD; extra-args-fn appends options.
measure() {
  local tool=$1 scen=$2 run=$3 extra=${4:-} log
  log=$WORK/logs/$tool-$scen-$run.log
  "${tool}_cmd"
  [ -z "$extra" ] || "$extra"
  CMD+=("$PROJ")   # the context last: buildah takes no options after it
  "${tool}_mem_before"
  if ! run_timed "$log" "${CMD[@]}"; then
    say "  $tool $scen run $run failed: ${CMD[*]}"
    tail -n 20 "$log" | sed 's/^/    | /' >&2
    NOTE[$tool]="$scen build failed: $(grep -v '^[[:space:]]*$' "$log" | tail -n1 | cut -c1-200)"
    return 1
  fi
  "${tool}_mem_after"
  TIMES[$tool/$scen]="${TIMES[$tool/$scen]:-}${TIMES[$tool/$scen]:+ }$T_SEC"
  if [ -n "$T_RSS_KB" ] && [ "$T_RSS_KB" -gt "${PEAK[$tool/$scen]:-0}" ]; then PEAK[$tool/$scen]=$T_RSS_KB; fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$scen" "$run" "$T_SEC" "${T_RSS_KB:-}" >>"$WORK/runs.tsv"
  say "  $tool $scen #$run: ${T_SEC}s${T_RSS_KB:+, peak $((T_RSS_KB / 1024)) MB}"
}

bench_tool() {
  local tool=$1 i
  PROJ=$WORK/proj-$tool
  cp -a "$PRISTINE" "$PROJ"
  if want_scen cold; then
    for ((i = 1; i <= RUNS; i++)); do
      "${tool}_reset" || { NOTE[$tool]="resetting its store failed"; return 1; }
      measure "$tool" cold "$i" || return 1
    done
  else
    "${tool}_reset" || { NOTE[$tool]="resetting its store failed"; return 1; }
    measure "$tool" warmup 1 || return 1
  fi
  if want_scen noop; then
    for ((i = 1; i <= RUNS; i++)); do measure "$tool" noop "$i" || return 1; done
  fi
  if want_scen src-edit; then
    for ((i = 1; i <= RUNS; i++)); do
      printf '# edit %d\n' "$i" >>"$PROJ/$SRC_EDIT_FILE"
      measure "$tool" src-edit "$i" || return 1
    done
  fi
  if want_scen req-edit; then
    for ((i = 1; i <= RUNS; i++)); do
      printf 'extra-package-%d==1.0.%d\n' "$i" "$i" >>"$PROJ/requirements.txt"
      measure "$tool" req-edit "$i" || return 1
    done
  fi
  if want_scen cache-from && "${tool}_cache_supported"; then
    "${tool}_reset" || { NOTE[$tool]="resetting its store failed"; return 1; }
    measure "$tool" cache-export 1 "${tool}_cache_export_args" || return 1
    "${tool}_cache_saved" || { NOTE[$tool]="saving the cache export failed"; return 1; }
    for ((i = 1; i <= RUNS; i++)); do
      "${tool}_reset" || { NOTE[$tool]="resetting its store failed"; return 1; }
      "${tool}_cache_restore" || { NOTE[$tool]="restoring the cache export failed"; return 1; }
      measure "$tool" cache-from "$i" "${tool}_cache_import_args" || return 1
    done
  fi
  return 0
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "rebuild.sh: $FILES files + ${DATA_MB} MB data, $RUNS run(s) per scenario, tools: ${WANT_TOOLS[*]}, work dir $WORK"
make_base
make_project
say "  project: $(find "$PRISTINE" -type f | wc -l) files, $(du -sm "$PRISTINE" | cut -f1) MB"

for tool in "${WANT_TOOLS[@]}"; do
  say "== $tool"
  if ! "${tool}_start"; then
    STATUS[$tool]=skipped
    say "  skipped: ${NOTE[$tool]:-could not start}"
    "${tool}_stop" || true
    continue
  fi
  say "  ${VERSION[$tool]:-}"
  if bench_tool "$tool"; then STATUS[$tool]=ok; else STATUS[$tool]=failed; fi
  "${tool}_stop" || true
  rm -rf "$WORK/proj-$tool"
done

# --- report ----------------------------------------------------------------------------------
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
cell() { # TOOL SCENARIO → median or n/a / skipped / failed
  local t=$1 s=$2
  if [ -n "${TIMES[$t/$s]:-}" ]; then
    # shellcheck disable=SC2086
    median ${TIMES[$t/$s]}
  elif [ "${STATUS[$t]}" = ok ]; then echo n/a
  else echo "${STATUS[$t]}"; fi
}
peak_kb() { # TOOL [SCENARIO] → KB or empty
  local t=$1 s=${2:-} k m=0
  for k in "${!PEAK[@]}"; do
    case "$k" in "$t/$s"*) [ "${PEAK[$k]}" -gt "$m" ] && m=${PEAK[$k]} ;; esac
  done
  if [ "$m" -gt 0 ]; then echo "$m"; fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "-" }'; }
is_num() { case "$1" in ''|*[!0-9.]*) return 1 ;; *) return 0 ;; esac; }

HAVE_RB=0
case " ${WANT_TOOLS[*]} " in *" rbuild "*) HAVE_RB=1 ;; esac
PEERS=()
for t in "${WANT_TOOLS[@]}"; do [ "$t" = rbuild ] || PEERS+=("$t"); done

{
  printf "# rebuild benchmark: %s files + %s MB data file, median of %s run(s), seconds; rbuild/peer < 1 means rbuild is faster\n" "$FILES" "$DATA_MB" "$RUNS"
  printf '%-12s' scenario
  for t in "${WANT_TOOLS[@]}"; do printf ' %10s' "$t"; done
  if [ "$HAVE_RB" = 1 ]; then for p in "${PEERS[@]}"; do printf ' %16s' "rbuild/$p"; done; fi
  printf '\n'
  for s in "${WANT_SCEN[@]}"; do
    printf '%-12s' "$s"
    for t in "${WANT_TOOLS[@]}"; do printf ' %10s' "$(cell "$t" "$s")"; done
    if [ "$HAVE_RB" = 1 ]; then
      for p in "${PEERS[@]}"; do
        a=$(cell rbuild "$s"); b=$(cell "$p" "$s")
        if is_num "$a" && is_num "$b"; then printf ' %16s' "$(ratio "$a" "$b")"; else printf ' %16s' -; fi
      done
    fi
    printf '\n'
  done
  printf '%-12s' peak-MB
  for t in "${WANT_TOOLS[@]}"; do
    k=$(peak_kb "$t")
    if [ -n "$k" ]; then printf ' %10s' "$(awk -v k="$k" 'BEGIN { printf "%.1f", k / 1024 }')"; else printf ' %10s' n/a; fi
  done
  if [ "$HAVE_RB" = 1 ]; then
    for p in "${PEERS[@]}"; do
      a=$(peak_kb rbuild); b=$(peak_kb "$p")
      if [ -n "$a" ] && [ -n "$b" ]; then printf ' %16s' "$(ratio "$a" "$b")"; else printf ' %16s' -; fi
    done
  fi
  printf '\n'
  printf '# notes:\n'
  for t in "${WANT_TOOLS[@]}"; do
    printf '#   %s: %s%s%s\n' "$t" "${STATUS[$t]}" "${VERSION[$t]:+; ${VERSION[$t]}}" "${NOTE[$t]:+; ${NOTE[$t]}}"
    [ -z "${MEMHOW[$t]:-}" ] || printf '#     memory: %s\n' "${MEMHOW[$t]}"
    for s in "${WANT_SCEN[@]}"; do
      [ -z "${NA[$t/$s]:-}" ] || printf '#     %s n/a: %s\n' "$s" "${NA[$t/$s]}"
    done
  done
  printf '#   machine: %s CPUs, %s; load average %s at start, %s at end (other work skews the times)\n' \
    "$(nproc)" "$(uname -sr)" "$LOAD_START" "$LOAD_END"
  [ -n "$GNU_TIME" ] || printf '#   peak memory of rbuild/buildah: n/a without GNU time (apt-get install time)\n'
} | tee "$WORK/table.txt"

# Machine-readable copies.
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr -d '\n')"; }
json_val() { if is_num "$1"; then printf '%s' "$1"; else printf 'null'; fi; }
{
  printf '{\n  "params": {"files": %s, "data_mb": %s, "runs": %s, "nproc": %s, "kernel": %s, "loadavg_start": %s, "loadavg_end": %s},\n' \
    "$FILES" "$DATA_MB" "$RUNS" "$(nproc)" "$(json_str "$(uname -r)")" "$(json_str "$LOAD_START")" "$(json_str "$LOAD_END")"
  printf '  "tools": {'
  first=1
  for t in "${WANT_TOOLS[@]}"; do
    [ "$first" = 1 ] || printf ','
    first=0
    printf '\n    %s: {"status": %s, "version": %s, "note": %s, "memory_method": %s, "peak_rss_kb": %s, "scenarios": {' \
      "$(json_str "$t")" "$(json_str "${STATUS[$t]}")" "$(json_str "${VERSION[$t]:-}")" \
      "$(json_str "${NOTE[$t]:-}")" "$(json_str "${MEMHOW[$t]:-}")" "$(json_val "$(peak_kb "$t")")"
    sfirst=1
    for s in "${WANT_SCEN[@]}"; do
      [ "$sfirst" = 1 ] || printf ','
      sfirst=0
      runs=$(printf '%s' "${TIMES[$t/$s]:-}" | tr ' ' ',')
      printf '\n      %s: {"median_s": %s, "runs_s": [%s], "peak_rss_kb": %s, "na": %s}' "$(json_str "$s")" \
        "$(json_val "$(cell "$t" "$s")")" "$runs" "$(json_val "${PEAK[$t/$s]:-}")" "$(json_str "${NA[$t/$s]:-}")"
    done
    printf '\n    }}'
  done
  printf '\n  }\n}\n'
} >"$WORK/results.json"
mkdir -p "$(dirname "$OUT")"
cp "$WORK/runs.tsv" "$OUT.tsv.tmp" && mv "$OUT.tsv.tmp" "$OUT.tsv"
cp "$WORK/results.json" "$OUT.json.tmp" && mv "$OUT.json.tmp" "$OUT.json"
say "wrote $OUT.tsv and $OUT.json"

for t in "${WANT_TOOLS[@]}"; do
  [ "${STATUS[$t]}" != failed ] || exit 1
done
exit 0
