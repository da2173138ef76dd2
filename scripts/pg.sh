#!/usr/bin/env bash
# Throwaway PostgreSQL for tests: `start DIR` prints export lines, `stop DIR` kills it and removes DIR, `check` finds the binaries.
set -euo pipefail

usage() { echo "usage: $0 start <dir> | stop <dir> | check" >&2; exit 2; }
cmd=${1:-} dir=${2:-}
case $cmd in start|stop) [ $# -eq 2 ] && [ -n "$dir" ] && [ "$dir" != / ] || usage ;; check) [ $# -eq 1 ] || usage ;; *) usage ;; esac

bindir=$(pg_config --bindir 2>/dev/null || true)
[ -x "$bindir/postgres" ] || bindir=$( (ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true) | sort -V | tail -n1)
if [ "$cmd" != stop ] && { [ ! -x "$bindir/postgres" ] || [ ! -x "$bindir/initdb" ]; }; then
  echo "pg.sh: PostgreSQL server binaries not found (tried pg_config --bindir and /usr/lib/postgresql/*/bin); install postgresql-15" >&2
  exit 1
fi
# initdb refuses to run as root: run the server as the postgres user when we are root.
if [ "$(id -u)" = 0 ]; then as_pg() { runuser -u postgres -- "$@"; }; owner=postgres; else as_pg() { "$@"; }; owner=$(id -un); fi

case $cmd in
check) echo "$bindir" ;;
start)
  mkdir -p "$dir" && touch "$dir/log" && chown "$owner" "$dir" "$dir/log" && chmod 700 "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_pg "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >"$dir/log" 2>&1 \
    || { echo "pg.sh: initdb failed, see $dir/log:" >&2; tail -n 20 "$dir/log" >&2; exit 1; }
  as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
    -o "-k $dir -c listen_addresses=127.0.0.1 -p $port -c fsync=off -c max_connections=300" start >/dev/null \
    || { echo "pg.sh: postgres failed to start, see $dir/log:" >&2; tail -n 20 "$dir/log" >&2; exit 1; }
  for _ in $(seq 1 60); do "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres && break; sleep 0.5; done
  "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres || { echo "pg.sh: postgres not ready on port $port, see $dir/log" >&2; exit 1; }
  "$bindir/psql" -q -X -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres >/dev/null <<'SQL'
CREATE ROLE palisade_owner  LOGIN CREATEDB CREATEROLE NOSUPERUSER NOBYPASSRLS;
CREATE ROLE palisade_bypass LOGIN CREATEDB CREATEROLE NOSUPERUSER BYPASSRLS;
SQL
  echo "export PALISADE_TEST_PG_URL=postgres://palisade_owner@127.0.0.1:$port/postgres"
  echo "export PALISADE_TEST_PG_BYPASS_URL=postgres://palisade_bypass@127.0.0.1:$port/postgres"
  echo "export PALISADE_TEST_PG_SUPERUSER_URL=postgres://postgres@127.0.0.1:$port/postgres"
  echo "export PALISADE_TEST_PG_BINDIR=$bindir"
  ;;
stop)
  if [ -f "$dir/data/postmaster.pid" ] && [ -x "$bindir/pg_ctl" ]; then
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
esac
