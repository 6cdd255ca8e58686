#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: formatting, lints, unit,
# doc and end-to-end tests (the real binary over real TLS, on SQLite and on
# PostgreSQL).
#
#   ./scripts/test-all.sh
#
# Anything the tests need is installed or started here when missing:
# PostgreSQL is started on a free port in a temporary directory unless
# TEST_POSTGRES_URL names one (a server where the user may
# CREATE DATABASE); redis-server is installed if missing (each Redis test
# starts its own on a free port, and stops and restarts it for outages);
# so are Debian's chromium and chromium-driver (the admin panel's tests).
set -euo pipefail
cd "$(dirname "$0")/.."

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

CLEANUP=()
cleanup() { for c in "${CLEANUP[@]}"; do eval "$c" || true; done; }
trap cleanup EXIT

ensure_postgres() {
  # The server binaries are needed either way: the store-outage test runs a
  # private cluster it can stop and restart.
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "installing PostgreSQL"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  if [ -n "${TEST_POSTGRES_URL:-}" ]; then
    echo "using PostgreSQL at the given TEST_POSTGRES_URL"
    return
  fi
  local dir port run=()
  dir=$(mktemp -d /tmp/portcullis-pg.XXXXXX)
  port=$(free_port)
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
    chown postgres "$dir"
    run=(runuser -u postgres --)
  fi
  "${run[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
  CLEANUP+=("${run[*]} $bin/pg_ctl -D $dir/data -m immediate stop >/dev/null; rm -rf $dir")
  export TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "started PostgreSQL on 127.0.0.1:$port"
}

echo "== toolchain"
cargo --version

echo "== format"
cargo fmt --all -- --check

echo "== lints"
cargo clippy --all-targets --locked -- -D warnings

echo "== services"
ensure_postgres

ensure_redis() {
  if ! command -v "${REDIS_SERVER:-redis-server}" >/dev/null; then
    echo "installing redis-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  fi
  echo "using $("${REDIS_SERVER:-redis-server}" --version | cut -d' ' -f1-3)"
}
ensure_redis

ensure_chromium() {
  # The admin panel is tested in real headless Chromium through WebDriver:
  # Debian's chromium and chromium-driver (the tests never download a browser).
  if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ] || ! command -v "${CHROMEDRIVER:-chromedriver}" >/dev/null; then
    echo "installing chromium and chromium-driver"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  fi
  echo "using $("${CHROMIUM:-/usr/bin/chromium}" --version 2>/dev/null | head -n 1)"
}
ensure_chromium

ensure_flask_example() {
  local venv=examples/flask-upstream/.venv
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import flask, jwt, cryptography' 2>/dev/null; then
    echo "installing the Flask example's requirements into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r examples/flask-upstream/requirements.txt
  fi
}
ensure_flask_example

echo "== tests (unit, doc, end-to-end)"
cargo test --all-targets --locked
cargo test --doc --locked
