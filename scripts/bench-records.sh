#!/usr/bin/env bash
# Records benchmark (issue 8): release build, audit on, an API key (read, read_draft, write),
# wrk with 32 connections on the same 2-core machine; SQLite, then a throwaway PostgreSQL.
# Measures record create, get by id, a list of 20, and a list of 20 filtered and sorted on
# fields. Needs `wrk`.
# Usage: scripts/bench-records.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10} conns=${2:-32} tool=palisade-records-bench
. scripts/bench-common.sh

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
  start_server "$name" "$@"
  curl -sf -X POST "$B/api/v1/workspaces/bench/collections" -H "authorization: Bearer $at" -H 'content-type: application/json' \
    -d '{"name":"tasks","fields":[{"name":"title","type":"text","required":true},{"name":"done","type":"boolean"},{"name":"estimate","type":"decimal"},{"name":"due","type":"date"},{"name":"tags","type":"tags"}]}' >/dev/null
  local key; key=$(bench_key '["read","read_draft","write"]')
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
  stop_server
}

each_backend
