#!/usr/bin/env bash
# Instructions per request, counted exactly by callgrind: the one figure on
# this shared 2-core machine that does not move with the noise, for
# comparing two builds of the request path.
#
#   bench/instructions.sh                     # every scenario, 3,000 requests each
#   SCENARIOS="get post" N=1000 bench/instructions.sh
#   BIN=/tmp/old-portcullis bench/instructions.sh   # another build, same scenarios
#
# Scenarios: get (proxied GET, no auth), post (40-byte JSON body checked
# against its schema), limited (GET with a per-address rate limit in memory),
# hs256 (the full chain: HS256 bearer token, role, rate limit), reject (the
# same route with an expired token: 401 and a security event).
# Runs the release binary under valgrind (installed when missing) with the
# instrumentation on only for the measured requests (after 500 warm-up
# requests), sent by oha over 8 connections to an nginx upstream. Prints the
# instructions per request of the whole process (user space: the kernel's
# work is not counted) and the costliest Portcullis functions, inclusive.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
N=${N:-3000}; SCENARIOS=${SCENARIOS:-get post limited hs256 reject}
need_packages valgrind nginx-light
need_oha
if [ -z "${BIN:-}" ]; then cargo build --release --quiet; BIN=$ROOT/target/release/portcullis; fi
UP=$(free_port); PH=$(free_port); PS=$(free_port)
export JWT_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
start_upstream "$UP"
{ gateway_header "$RUN/data-instructions"; bench_routes; } >"$RUN/instructions.toml"
rm -rf "$RUN/data-instructions" "$RUN"/callgrind.*
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$RUN/callgrind.%p" \
  "$BIN" serve --config "$RUN/instructions.toml" >"$RUN/instructions.log" 2>&1 & VG=$!; PIDS+=($VG)
for p in $UP $PH; do wait_port "$p"; done
callgrind_control -i on "$VG" >/dev/null 2>&1
TOKEN=$(mint_hs256 1)
# The same kind of token, expired an hour ago (answered 401).
EXPIRED=$(python3 - <<'PY'
import base64, hashlib, hmac, json, os, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
claims = {"sub": "user0", "role": "user", "type": "access", "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}
body = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims, separators=(",", ":")).encode())
print(body + "." + b64(hmac.new(os.environ["JWT_SECRET_KEY"].encode(), body.encode(), hashlib.sha256).digest()))
PY
)
ITEM='{"name":"blue widget 001","price":12.50}'
for scenario in $SCENARIOS; do
  case $scenario in
    get) args=("http://127.0.0.1:$PH/items/1") ;;
    post) args=(-m POST -T application/json -d "$ITEM" "http://127.0.0.1:$PH/items") ;;
    limited) args=("http://127.0.0.1:$PH/limited/1") ;;
    hs256) args=(-H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PH/orders/1") ;;
    reject) args=(-H "Authorization: Bearer $EXPIRED" "http://127.0.0.1:$PH/orders/1") ;;
    *) echo "unknown scenario $scenario" >&2; exit 1 ;;
  esac
  load() { "$OHA" -n "$1" -c 8 --no-tui --output-format json -H 'X-Forwarded-Proto: https' "${args[@]}" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(f"{k}x{v}" for k, v in d["statusCodeDistribution"].items()))'; }
  load 500 >/dev/null
  callgrind_control -z "$VG" >/dev/null 2>&1
  ok=$(load "$N")
  callgrind_control -d "$scenario" "$VG" >/dev/null 2>&1
  sleep 1
  dump=$(ls "$RUN"/callgrind.*.* | sort -V | tail -1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$scenario: $((total / N)) instructions per request ($N requests, status $ok)"
  callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | grep 'portcullis::' | grep -v '{{closure}}' | head -"${TOP:-8}" \
    | awk -v n="$N" '{v=$1; gsub(",", "", v); $1=$2=$3=""; sub(/^ +\?\?\?:/, ""); printf "  %7d  %s\n", v / n, substr($0, 1, 110)}' || true
done
