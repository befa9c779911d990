#!/bin/bash
# Entrypoint of localhost/storekit-dynamodb-local (built by container-images.sh): `java "$@"` as
# in amazon/dynamodb-local, but its output is passed on only once port 8000 accepts connections.
# DynamoDB Local prints its banner before it listens, and testcontainers takes the banner and
# 3 s more for ready, which is too short on a loaded machine.
set -eu
out=$(mktemp)
java "$@" >"$out" 2>&1 &
pid=$!
until (: <>/dev/tcp/127.0.0.1/8000) 2>/dev/null; do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
exec tail -n +1 -f --pid="$pid" "$out"
