#!/usr/bin/env bash
# Start command of the Portcullis rows of ../shared/anchors/run-all.sh (see
# bench/extra-stacks.sh): creates the harness's login user (alice, the
# password of its LOGIN_BODY, role user) when missing, then runs `serve` in
# the foreground.
#   bench/anchors-start.sh bench/anchors.toml
set -euo pipefail
CONFIG=$1
BIN=$(cd "$(dirname "$0")/.." && pwd)/target/release/portcullis
if ! "$BIN" users list --search alice --config "$CONFIG" 2>/dev/null | grep -qw alice; then
  echo "correct horse battery staple" | "$BIN" users add alice --role user --password-stdin --config "$CONFIG" >/dev/null
fi
exec "$BIN" serve --config "$CONFIG"
