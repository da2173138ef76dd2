#!/usr/bin/env bash
# API key verification cost (issue 7): release build of examples/api_key_bench.rs on SQLite, then
# on a throwaway PostgreSQL when one can be started. Server time per request, measured inside the
# process: the workspace read with no auth work vs. the same with the API key check before it.
# Usage: scripts/bench-api-keys.sh [iterations]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
cargo build --release -q -p palisade --example api_key_bench
bench=$PWD/target/release/examples/api_key_bench
work=$(mktemp -d /tmp/palisade-key-bench.XXXXXX)
pgdir=
cleanup() {
  [ -z "$pgdir" ] || scripts/pg.sh stop "$pgdir" || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== SQLite"
PALISADE_LOG=warn "$bench" "sqlite://$work/bench.db" "$n"
if scripts/pg.sh check >/dev/null 2>&1; then
  pgdir=$(mktemp -d /tmp/palisade-pg.XXXXXX)
  pgenv=$(scripts/pg.sh start "$pgdir"); eval "$pgenv"
  psql -q "$PALISADE_TEST_PG_URL" -c 'CREATE DATABASE keybench' >/dev/null
  echo "== PostgreSQL"
  PALISADE_LOG=warn "$bench" "${PALISADE_TEST_PG_URL%/postgres}/keybench" "$n"
fi
