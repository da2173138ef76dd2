#!/usr/bin/env bash
# Records benchmark (issue 8): release build, audit on, an API key (read, read_draft, write),
# wrk with 32 connections on the same 2-core machine; SQLite, then a throwaway PostgreSQL.
# Measures record create, get by id, a list of 20, and a list of 20 filtered and sorted on
# fields. Needs `wrk`.
# Usage: scripts/bench-records.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10} conns=${2:-32}
command -v wrk >/dev/null || { echo "bench-records.sh: install wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p palisade
bin=$PWD/target/release/palisade
work=$(mktemp -d /tmp/palisade-records-bench.XXXXXX)
pgdir= server=
cleanup() {
  [ -z "$server" ] || kill "$server" 2>/dev/null || true
  [ -z "$pgdir" ] || scripts/pg.sh stop "$pgdir" || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

cat >"$work/create.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"title":"Task %d","done":false,"estimate":"%d.50","due":"2026-12-01","tags":["bench","t%d"]}', n, n % 100, n % 7)
  return wrk.format(nil, nil, nil, body)
end
LUA

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
  curl -sf -X POST "$B/api/v1/workspaces/bench/collections" -H "authorization: Bearer $at" -H 'content-type: application/json' \
    -d '{"name":"tasks","fields":[{"name":"title","type":"text","required":true},{"name":"done","type":"boolean"},{"name":"estimate","type":"decimal"},{"name":"due","type":"date"},{"name":"tags","type":"tags"}]}' >/dev/null
  local key; key=$(curl -sf -X POST "$B/api/v1/workspaces/bench/api-keys" -H "authorization: Bearer $at" \
    -H 'content-type: application/json' -d '{"name":"bench","scopes":["read","read_draft","write"]}' | json key)
  local R=$B/api/v1/workspaces/bench/collections/tasks/records
  local id; id=$(curl -sf -X POST "$R" -H "authorization: Bearer $key" -H 'content-type: application/json' \
    -d '{"title":"first","done":true,"estimate":"1.00","due":"2026-12-01","tags":["a"]}' | json id)
  echo "== $name: POST record (validation, audit entry with a diff, tag entries)"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$work/create.lua" -H "authorization: Bearer $key" "$R" | grep -E 'Requests/sec|50%|99%|Non-2xx'
  echo "== $name: GET record by id"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -H "authorization: Bearer $key" "$R/$id" | grep -E 'Requests/sec|50%|99%|Non-2xx'
  echo "== $name: GET list of 20"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -H "authorization: Bearer $key" "$R?limit=20" | grep -E 'Requests/sec|50%|99%|Non-2xx'
  echo "== $name: GET list of 20, filtered and sorted on fields (a scan of the collection: no per-field index)"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -H "authorization: Bearer $key" \
    "$R?limit=20&filter%5Bdone%5D%5Beq%5D=false&sort=-estimate,title" | grep -E 'Requests/sec|50%|99%|Non-2xx'
  kill "$server"; wait "$server" 2>/dev/null || true; server=
}

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
