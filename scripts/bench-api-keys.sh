#!/usr/bin/env bash
# API key verification cost (issue 7): examples/api_key_bench.rs on SQLite and PostgreSQL. Server
# time per request, measured inside the process: the workspace read with no auth work vs. the
# same with the API key check before it.
# Usage: scripts/bench-api-keys.sh [iterations]
exec "$(dirname "$0")/bench-example.sh" api_key_bench "${1:-20000}"
