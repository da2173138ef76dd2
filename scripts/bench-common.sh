# Shared by the HTTP benchmarks (sourced, not run): a release build, a work directory removed on
# exit, a server per backend with budgets above any offered load, and a signed-in bench account
# with a workspace `bench`. Needs `wrk`.
# The caller sets `tool` (its name, for messages), then defines `run NAME [serve args…]` and calls
# `each_backend`.
command -v wrk >/dev/null || { echo "$tool: install wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p palisade
bin=$PWD/target/release/palisade
work=$(mktemp -d "/tmp/$tool.XXXXXX")
pgdir= server=
cleanup() {
  [ -z "$server" ] || kill "$server" 2>/dev/null || true
  [ -z "$pgdir" ] || scripts/pg.sh stop "$pgdir" || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

# Throughput, limiter included (leased, in memory): budgets above the offered load. Address
# verification is not what is measured: the bench account signs in unverified.
cat >"$work/palisade.toml" <<'TOML'
[accounts]
require_verified_email = false
[rate_limits.auth]
api_per_account = "1000000/1s"
[rate_limits.plans.starter.api]
per_workspace = "1000000/1s"
per_key = "1000000/1s"
TOML

# start_server NAME [serve args…]: sets B (the base URL) and `server`; then signs up, signs in
# (sets `at`, an access token) and creates the workspace `bench`.
start_server() {
  local name=$1; shift
  local p; p=$(port)
  B=http://127.0.0.1:$p
  PALISADE_LOG=warn "$bin" serve --config "$work/palisade.toml" --listen "127.0.0.1:$p" --data-dir "$work/$name" "$@" >"$work/$name.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do curl -sf "$B/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf -X POST "$B/api/v1/auth/signup" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"benchmark password","name":"Bench"}' >/dev/null
  at=$(curl -sf -X POST "$B/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"benchmark password"}' | json access_token)
  curl -sf -X POST "$B/api/v1/workspaces" -H "authorization: Bearer $at" -H 'content-type: application/json' \
    -d '{"name":"Bench","slug":"bench"}' >/dev/null
}

# bench_key SCOPES_JSON: a new API key of the workspace `bench` with those scopes.
bench_key() {
  curl -sf -X POST "$B/api/v1/workspaces/bench/api-keys" -H "authorization: Bearer $at" \
    -H 'content-type: application/json' -d "{\"name\":\"bench\",\"scopes\":$1}" | json key
}

stop_server() { kill "$server"; wait "$server" 2>/dev/null || true; server=; }

# `run sqlite`, then `run postgres` on a throwaway PostgreSQL when one can start here.
each_backend() {
  run sqlite
  if scripts/pg.sh check >/dev/null 2>&1; then
    pgdir=$(mktemp -d /tmp/palisade-pg.XXXXXX)
    pgenv=$(scripts/pg.sh start "$pgdir"); eval "$pgenv"
    psql -q "$PALISADE_TEST_PG_URL" -c 'CREATE DATABASE bench' >/dev/null
    run postgres --database-url "${PALISADE_TEST_PG_URL%/postgres}/bench"
  fi
}
