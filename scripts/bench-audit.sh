#!/usr/bin/env bash
# Audit-log benchmarks (release builds):
#  1. append cost through the store's write path, with and without the audit append, on SQLite
#     and on a throwaway PostgreSQL;
#  2. `palisade audit verify` over a generated, signed 1,000,000-entry log (entries shaped like
#     request-born ones: a diff plus IP and user-agent commitments with their openings), on all
#     cores and pinned to one.
# Usage: scripts/bench-audit.sh [entries] [append-transactions]
set -euo pipefail
cd "$(dirname "$0")/.."
entries=${1:-1000000} txs=${2:-2000}
work=$(mktemp -d /tmp/palisade-audit-bench.XXXXXX)
pgdir=
cleanup() { [ -z "$pgdir" ] || scripts/pg.sh stop "$pgdir" || true; rm -rf "$work"; }
trap cleanup EXIT

echo "== append cost ($txs transactions each)"
if scripts/pg.sh check >/dev/null 2>&1; then
  pgdir=$(mktemp -d /tmp/palisade-pg.XXXXXX)
  pgenv=$(scripts/pg.sh start "$pgdir"); eval "$pgenv"
fi
cargo run --release -q -p palisade-store --features test-support --example audit_append -- "$txs"

echo "== verification of $entries entries"
cargo build --release -q -p palisade -p palisade-audit --example gen_log
target/release/examples/gen_log "$work" "$entries" >/dev/null
size=$(du -h "$work/entries.ndjson" | cut -f1)
args=(audit verify --jwks "$work/jwks.json" --checkpoint "$work/checkpoint.json" --entries "$work/entries.ndjson")
for mode in all-cores one-core; do
  pin=(); [ "$mode" = one-core ] && pin=(taskset -c 0)
  start=$(date +%s.%N)
  "${pin[@]}" target/release/palisade "${args[@]}" >/dev/null
  end=$(date +%s.%N)
  python3 -c "s=$end-$start; print(f'$mode: {s:.2f} s for $entries entries ($size NDJSON) = {$entries/s:,.0f} entries/s')"
done
