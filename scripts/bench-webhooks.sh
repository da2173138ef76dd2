#!/usr/bin/env bash
# Webhook delivery throughput (issue 10): examples/webhook_bench.rs on SQLite and PostgreSQL. An
# outbox of `records` deliveries is drained by the dispatcher into an in-process receiver that
# verifies every signature, once per concurrency; then the same while the records are created
# (end-to-end rate and lag), and the dispatcher's steps timed one at a time.
# Usage: scripts/bench-webhooks.sh [records] [concurrency,…]
exec "$(dirname "$0")/bench-example.sh" webhook_bench "${1:-5000}" "${2:-64,256}"
