#!/usr/bin/env bash
# Re-encryption throughput (issue 9): examples/reencrypt_bench.rs on SQLite and PostgreSQL. A
# workspace's data key is rotated and its encrypted values re-encrypted, idle and under an HTTP
# read/write load.
# Usage: scripts/bench-keys.sh [records]
exec "$(dirname "$0")/bench-example.sh" reencrypt_bench "${1:-20000}"
