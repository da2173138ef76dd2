#!/usr/bin/env bash
# Load benchmark of the hot read path (JWT auth + session check + membership check + workspace
# read, and the same with an API key) against a release build, on SQLite and on a throwaway
# PostgreSQL. Needs `wrk`.
# Usage: scripts/bench.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15} conns=${2:-32} tool=palisade-bench
. scripts/bench-common.sh

run() { # backend-name extra-serve-args...
  local name=$1; shift
  start_server "$name" "$@"
  local key; key=$(bench_key '["read"]')
  echo "== $name: GET /healthz (no auth, no database)"
  wrk -t2 -c"$conns" -d"${secs}s" --latency "$B/healthz" | grep -E 'Requests/sec|50%|99%'
  echo "== $name: GET /api/v1/workspaces/bench (JWT + session + membership + read)"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -H "authorization: Bearer $at" "$B/api/v1/workspaces/bench" | grep -E 'Requests/sec|50%|99%|Non-2xx'
  echo "== $name: GET /api/v1/workspaces/bench (API key + read)"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -H "authorization: Bearer $key" "$B/api/v1/workspaces/bench" | grep -E 'Requests/sec|50%|99%|Non-2xx'
  stop_server
}

each_backend
