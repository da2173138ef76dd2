#!/usr/bin/env bash
# Runs an in-process benchmark example (crates/palisade/examples/NAME.rs) in release on SQLite,
# then on a throwaway PostgreSQL when one can be started; the example takes the database URL
# first, then ARGS. Shared by scripts/bench-api-keys.sh and scripts/bench-keys.sh.
# Usage: scripts/bench-example.sh NAME [ARGS…]
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
cargo build --release -q -p palisade --example "$name"
bench=$PWD/target/release/examples/$name
work=$(mktemp -d "/tmp/palisade-$name.XXXXXX")
pgdir=
cleanup() {
  [ -z "$pgdir" ] || scripts/pg.sh stop "$pgdir" || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== SQLite"
PALISADE_LOG=warn "$bench" "sqlite://$work/bench.db" "$@"
if scripts/pg.sh check >/dev/null 2>&1; then
  pgdir=$(mktemp -d /tmp/palisade-pg.XXXXXX)
  pgenv=$(scripts/pg.sh start "$pgdir"); eval "$pgenv"
  psql -q "$PALISADE_TEST_PG_URL" -c 'CREATE DATABASE bench' >/dev/null
  echo "== PostgreSQL"
  PALISADE_LOG=warn "$bench" "${PALISADE_TEST_PG_URL%/postgres}/bench" "$@"
fi
