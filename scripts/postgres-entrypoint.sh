#!/bin/sh
# Entrypoint of localhost/storekit-postgres (built by container-images.sh): the official postgres
# image's, reduced to what testcontainers' postgres module uses. POSTGRES_USER, POSTGRES_PASSWORD
# and POSTGRES_DB as there; arguments starting with '-' go to postgres. testcontainers waits for
# "database system is ready to accept connections" on stderr (the server's) and on stdout (the
# official entrypoint's), so this prints it once the server accepts TCP connections.
set -eu
case ${1:-} in -*) set -- postgres "$@" ;; esac
[ "${1:-}" = postgres ] || exec "$@"
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?is not set}"
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 --no-sync \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    printf 'CREATE DATABASE "%s";\n' "$(printf %s "$db" | sed 's/"/""/g')" |
      postgres --single -F -D "$PGDATA" postgres >/dev/null
  fi
fi
"$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null || true' INT TERM
until pg_isready -q -h 127.0.0.1 -U "$user" -d "$db"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"
    exit 1
  fi
  sleep 0.2
done
echo "storekit-postgres: database system is ready to accept connections"
# A signal interrupts `wait`: wait again until the server has exited, and exit with its status.
status=0
wait "$pid" || status=$?
while kill -0 "$pid" 2>/dev/null; do wait "$pid" || status=$?; done
exit "$status"
