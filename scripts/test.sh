#!/usr/bin/env bash
# Runs every check and every test on every backend, starting the servers it needs.
#
#   scripts/test.sh                 # fmt, clippy, docs, then all tests on all backends
#   STOREKIT_KEEP_SERVICES=1 scripts/test.sh   # leave the servers running afterwards
#
# With CI set, a backend whose server cannot be reached fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*" >&2; }

step "servers"
services=$(bash scripts/services.sh up)
eval "$services"
if [[ -z ${STOREKIT_KEEP_SERVICES:-} ]]; then
  trap 'eval "$(bash scripts/services.sh down)" || true' EXIT
fi
env | grep '^STOREKIT_' >&2 || true

step "format"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps

step "tests (memory, sqlite, postgres, dynamodb)"
cargo test --workspace --all-features
