#!/usr/bin/env bash
# Runs every check and every test on every backend, starting the servers it needs.
#
#   scripts/test.sh                 # fmt, clippy, docs, then all tests on all backends
#   STOREKIT_KEEP_SERVICES=1 scripts/test.sh   # leave the servers running afterwards
#   STOREKIT_CONTAINERS=1 scripts/test.sh      # then the postgres and dynamodb suites again,
#                                              # through containers (always with CI; =0: never)
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
  # The same suites, with no URL in the environment: the harness starts each server with
  # testcontainers, here from images built locally and run by podman (no registry, no Docker).
  step "tests through containers (postgres, dynamodb)"
  started=$SECONDS
  images=$(bash scripts/container-images.sh up)
  containers_up=1
  (
    eval "$images"
    unset STOREKIT_POSTGRES_URL STOREKIT_DYNAMODB_ENDPOINT
    # --workspace --all-features, as above, so that nothing is rebuilt: `-p` would unify
    # dependency features differently and recompile much of the tree.
    cargo test --workspace --all-features --test postgres --test dynamodb
  )
  printf '\n== tests through containers took %d s\n' $((SECONDS - started)) >&2
fi
