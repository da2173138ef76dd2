#!/usr/bin/env bash
# Rate-limit fairness benchmark (release build): a flood of sign-ins from one IP (127.0.0.1) at
# an offered rate of 2,500/s for 30 s, while members of other workspaces read their workspaces;
# reports the flood's statuses and the readers' p50/p99/max latency. Default configuration
# (default budgets), SQLite, then a throwaway PostgreSQL when one can be started.
# Usage: scripts/bench-limits.sh [seconds] [offered sign-ins per second] [readers]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30} rate=${2:-2500} readers=${3:-4}
cargo build --release -q -p palisade --bin palisade --example auth_flood
bin=$PWD/target/release/palisade
flood=$PWD/target/release/examples/auth_flood
work=$(mktemp -d /tmp/palisade-limits-bench.XXXXXX)
pgdir= server=
cleanup() {
  [ -z "$server" ] || kill "$server" 2>/dev/null || true
  [ -z "$pgdir" ] || scripts/pg.sh stop "$pgdir" || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Default limits; the readers sign in without verifying their (made-up) addresses.
printf '[accounts]\nrequire_verified_email = false\n' >"$work/palisade.toml"

run() { # backend-name extra-serve-args...
  local name=$1; shift
  local p; p=$(port)
  local B=http://127.0.0.1:$p
  PALISADE_LOG=warn "$bin" serve --config "$work/palisade.toml" --listen "127.0.0.1:$p" --data-dir "$work/$name" "$@" >"$work/$name.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do curl -sf "$B/readyz" >/dev/null && break; sleep 0.1; done
  echo "== $name: $rate sign-ins/s from one IP for ${secs}s, $readers other tenants reading"
  "$flood" "$B" "$secs" "$rate" "$readers"
  kill "$server"; wait "$server" 2>/dev/null || true; server=
}

run sqlite
if scripts/pg.sh check >/dev/null 2>&1; then
  pgdir=$(mktemp -d /tmp/palisade-pg.XXXXXX)
  pgenv=$(scripts/pg.sh start "$pgdir"); eval "$pgenv"
  psql -q "$PALISADE_TEST_PG_URL" -c 'CREATE DATABASE bench' >/dev/null
  run postgres --database-url "${PALISADE_TEST_PG_URL%/postgres}/bench"
fi
