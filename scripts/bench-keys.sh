#!/usr/bin/env bash
# Re-encryption throughput (issue 9): release build of examples/reencrypt_bench.rs on SQLite, then
# on a throwaway PostgreSQL when one can be started. A workspace's data key is rotated and its
# encrypted values re-encrypted, idle and under an HTTP read/write load.
# Usage: scripts/bench-keys.sh [records]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
cargo build --release -q -p palisade --example reencrypt_bench
bench=$PWD/target/release/examples/reencrypt_bench
work=$(mktemp -d /tmp/palisade-rekey-bench.XXXXXX)
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
  psql -q "$PALISADE_TEST_PG_URL" -c 'CREATE DATABASE rekeybench' >/dev/null
  echo "== PostgreSQL"
  PALISADE_LOG=warn "$bench" "${PALISADE_TEST_PG_URL%/postgres}/rekeybench" "$n"
fi
