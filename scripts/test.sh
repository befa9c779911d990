#!/usr/bin/env bash
# Runs every check and every test on every backend, starting the servers it needs.
#
#   scripts/test.sh                 # shellcheck, fmt, clippy, docs, then all tests on all backends
#   STOREKIT_KEEP_SERVICES=1 scripts/test.sh   # leave the servers running afterwards
#   STOREKIT_CONTAINERS=1 scripts/test.sh      # then a smoke test of the suite's containers
#                                              # (always with CI; =0: never)
#
# With CI set, a backend whose server cannot be reached fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*" >&2; }

containers_up=
cleanup() {
  if [[ -n $containers_up ]]; then
    eval "$(bash scripts/container-images.sh down)" || true
  fi
  if [[ -z ${STOREKIT_KEEP_SERVICES:-} ]]; then
    eval "$(bash scripts/services.sh down)" || true
  fi
}
trap cleanup EXIT

# A clean build's incremental caches are written once and never read: on CI they only take disk.
if [[ -n ${CI:-} ]]; then
  export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
fi

step "shellcheck"
if ! command -v shellcheck >/dev/null; then
  (
    source scripts/lib.sh
    apt_install shellcheck
  )
fi
shellcheck -x scripts/*.sh .ci/run

step "servers"
services=$(bash scripts/services.sh up)
eval "$services"
env | grep '^STOREKIT_' >&2 || true

step "format"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps

step "tests (memory, sqlite, postgres, dynamodb)"
cargo test --workspace --all-features

containers=${STOREKIT_CONTAINERS:-}
if [[ $containers == 1 || (-n ${CI:-} && $containers != 0) ]]; then
  # The suites ran above on the local servers; two cases per backend prove that the harness
  # starts its own servers with testcontainers when no URL is set, here from images built
  # locally and run by podman (no registry, no Docker).
  step "container smoke test (postgres, dynamodb)"
  images=$(bash scripts/container-images.sh up)
  containers_up=1
  smoke=(users_uuid::user_round_trip kv::kv_round_trip)
  smoke_log=target/container-smoke.log
  (
    eval "$images"
    unset STOREKIT_POSTGRES_URL STOREKIT_DYNAMODB_ENDPOINT
    export CI=${CI:-true} # a container that does not start fails the step, never skips
    # --workspace --all-features, as above, so that nothing is rebuilt: `-p` would unify
    # dependency features differently and recompile much of the tree.
    cargo test --workspace --all-features --test postgres --test dynamodb -- --exact "${smoke[@]}"
  ) | tee "$smoke_log"
  # A filter that matches no test passes: require both binaries to have run every smoke case.
  if [[ $(grep -c "^test result: ok. ${#smoke[@]} passed" "$smoke_log") != 2 ]]; then
    echo "the container smoke test did not run ${smoke[*]} in both binaries" >&2
    exit 1
  fi
fi
