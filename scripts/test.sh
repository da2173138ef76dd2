#!/usr/bin/env bash
# The one test command: fmt, clippy, then `cargo test --workspace "$@"` against SQLite and a throwaway PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> one TLS stack: no OpenSSL, no native-tls"
for banned in openssl-sys native-tls; do
  if cargo tree --workspace -i "$banned" >/dev/null 2>&1; then
    echo "test.sh: $banned is in the dependency tree (cargo tree -i $banned)" >&2
    exit 1
  fi
done

echo "==> python test tools"
venv=$PWD/target/test-venv
if [ ! -x "$venv/bin/pip" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" || { rm -rf "$venv"; echo "test.sh: cannot create a venv: install python3-venv" >&2; exit 1; }
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
export PALISADE_TEST_PYTHON=$venv/bin/python

echo "==> reference audit verifier (Python) self-tests"
"$venv/bin/python" -m unittest discover -s tests/verifier -p 'test_*.py' 2>&1 | tail -n 3

backends="sqlite (PostgreSQL NOT tested)"
pgdir=
cleanup() { if [ -n "$pgdir" ]; then scripts/pg.sh stop "$pgdir" || true; fi; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if scripts/pg.sh check >/dev/null 2>&1; then
  echo "==> starting throwaway PostgreSQL"
  pgdir=$(mktemp -d /tmp/palisade-pg.XXXXXX) # short path: the unix socket lives here
  pgenv=$(scripts/pg.sh start "$pgdir")      # assigned first so a failed start stops the script
  eval "$pgenv"
  backends="sqlite postgres"
elif [ "${PALISADE_REQUIRE_POSTGRES:-0}" = 1 ]; then
  scripts/pg.sh check || true
  echo "test.sh: PALISADE_REQUIRE_POSTGRES=1 but PostgreSQL server binaries are missing" >&2
  exit 1
else
  echo "##########################################################################" >&2
  echo "## WARNING: PostgreSQL not found: ONLY SQLite WILL BE TESTED.           ##" >&2
  echo "## Install postgresql-15 (or run .ci/run) to test the Postgres backend. ##" >&2
  echo "##########################################################################" >&2
fi

echo "==> cargo test --workspace $*"
cargo test --workspace "$@"
echo "test.sh: all checks passed; backends tested: $backends"
