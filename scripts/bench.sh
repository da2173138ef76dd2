#!/usr/bin/env bash
# Load benchmark of the hot read path (JWT auth + session check + membership check + workspace
# read, and the same with an API key) against a release build, on SQLite and on a throwaway
# PostgreSQL. Needs `wrk`.
# Usage: scripts/bench.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15} conns=${2:-32}
command -v wrk >/dev/null || { echo "bench.sh: install wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p palisade
bin=$PWD/target/release/palisade
work=$(mktemp -d /tmp/palisade-bench.XXXXXX)
pgdir= server=
cleanup() {
  [ -z "$server" ] || kill "$server" 2>/dev/null || true
  [ -z "$pgdir" ] || scripts/pg.sh stop "$pgdir" || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

run() { # backend-name extra-serve-args...
  local name=$1; shift
  local p; p=$(port)
  local B=http://127.0.0.1:$p
  PALISADE_LOG=warn "$bin" serve --config "$work/palisade.toml" --listen "127.0.0.1:$p" --data-dir "$work/$name" "$@" >"$work/$name.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do curl -sf "$B/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf -X POST "$B/api/v1/auth/signup" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"benchmark password","name":"Bench"}' >/dev/null
  local at; at=$(curl -sf -X POST "$B/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"benchmark password"}' | json access_token)
  curl -sf -X POST "$B/api/v1/workspaces" -H "authorization: Bearer $at" -H 'content-type: application/json' \
    -d '{"name":"Bench","slug":"bench"}' >/dev/null
  local key; key=$(curl -sf -X POST "$B/api/v1/workspaces/bench/api-keys" -H "authorization: Bearer $at" \
    -H 'content-type: application/json' -d '{"name":"bench","scopes":["read"]}' | json key)
  echo "== $name: GET /healthz (no auth, no database)"
  wrk -t2 -c"$conns" -d"${secs}s" --latency "$B/healthz" | grep -E 'Requests/sec|50%|99%'
  echo "== $name: GET /api/v1/workspaces/bench (JWT + session + membership + read)"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -H "authorization: Bearer $at" "$B/api/v1/workspaces/bench" | grep -E 'Requests/sec|50%|99%|Non-2xx'
  echo "== $name: GET /api/v1/workspaces/bench (API key + read)"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -H "authorization: Bearer $key" "$B/api/v1/workspaces/bench" | grep -E 'Requests/sec|50%|99%|Non-2xx'
  kill "$server"; wait "$server" 2>/dev/null || true; server=
}

# The read path's throughput, limiter included (leased, in memory): budgets above the offered load.
# Address verification is not what is measured: the bench account signs in unverified.
cat >"$work/palisade.toml" <<'TOML'
[accounts]
require_verified_email = false
[rate_limits.auth]
api_per_account = "1000000/1s"
[rate_limits.plans.starter.api]
per_workspace = "1000000/1s"
per_key = "1000000/1s"
TOML

run sqlite
if scripts/pg.sh check >/dev/null 2>&1; then
  pgdir=$(mktemp -d /tmp/palisade-pg.XXXXXX)
  pgenv=$(scripts/pg.sh start "$pgdir"); eval "$pgenv"
  psql -q "$PALISADE_TEST_PG_URL" -c 'CREATE DATABASE bench' >/dev/null
  run postgres --database-url "${PALISADE_TEST_PG_URL%/postgres}/bench"
fi
