#!/usr/bin/env bash
# Logins under load, and whether they starve the proxy path.
#
#   bench/login.sh                        # 3 rounds, 10 s each, 32 connections, 200 req/s
#   ROUNDS=1 DURATION=5s bench/login.sh   # quick run
#   HASHES=1 bench/login.sh               # [login] max_concurrent_hashes (default: cores)
#
# Portcullis with its defaults for passwords (Argon2id, m = 19 MiB, t = 2,
# p = 1; hashes at once: [login] max_concurrent_hashes) and the login limit
# raised so the flood is measured, not refused. Each round measures:
#   login-1       POST /auth/login, one connection (the latency of one login)
#   login-32      POST /auth/login, 32 connections (throughput)
#   get-fixed     GET through the full token chain at a fixed RATE (oha,
#                 latency-corrected), nothing else running
#   get-flood     the same GETs while login-32 runs beside them
# Installs wrk, nginx and oha when missing; writes bench/results/login-<time>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10s}; CONNS=${CONNS:-32}; RATE=${RATE:-200}
need_packages wrk nginx-light
need_oha
cargo build --release --quiet
BIN=$ROOT/target/release/portcullis
UP=$(free_port); PH=$(free_port); PS=$(free_port)
RAW=$OUT/login-raw-$TS.tsv; TABLE=$OUT/login-$TS.md
export JWT_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
{ gateway_header "$RUN/data-login"; cat <<TOML

[login]
rate_limit = [{ rate = "1000000/minute", key = "ip" }]
${HASHES:+max_concurrent_hashes = $HASHES}
TOML
bench_full_chain; } >"$RUN/login.toml"
PASSWORD=bench-password-not-common-7f3e
rm -rf "$RUN/data-login"
echo "$PASSWORD" | "$BIN" users add bench --role user --password-stdin --config "$RUN/login.toml" >/dev/null
start_upstream "$UP"
"$BIN" serve --config "$RUN/login.toml" >"$RUN/portcullis-login.log" 2>&1 & PGW=$!; PIDS+=($PGW)
for p in $UP $PH $PS; do wait_port "$p"; done
LOGIN="{\"username\":\"bench\",\"password\":\"$PASSWORD\"}"
TOKEN=$(curl -s "http://127.0.0.1:$PH/auth/login" -H 'X-Forwarded-Proto: https' -H 'content-type: application/json' -d "$LOGIN" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Forwarded-Proto: https' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PH/orders/1")
[ "$code" = 200 ] || { echo "GET /orders/1 answered $code" >&2; exit 1; }

logins() { # connections duration -> RESULT line
  WRK_METHOD=POST WRK_PATH=/auth/login WRK_BODY=$LOGIN wrk -t1 -c"$1" -d"$2" --timeout 30s -s bench/wrk.lua "http://127.0.0.1:$PH" | grep '^RESULT'
}
fixed_gets() { # -> "achieved_rps p50_ms p99_ms success"
  "$OHA" -z "$DURATION" -q "$RATE" -c "$CONNS" --latency-correction --no-tui --output-format json \
    -H 'X-Forwarded-Proto: https' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PH/orders/1" 2>/dev/null \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); s=d["summary"]; p=d["latencyPercentiles"]; print("rps=%.1f p50_ms=%.3f p99_ms=%.3f success=%.4f" % (s["requestsPerSec"], p["p50"]*1000, p["p99"]*1000, s["successRate"]))'
}
printf 'round\tscenario\tvalues\trss_kib\n' >"$RAW"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(rss_kib "$PGW")" | tee -a "$RAW"; }
echo "# warm-up"; logins 4 2s >/dev/null; sleep 2
for r in $(seq 1 "$ROUNDS"); do
  record "$r" login-1 "$(logins 1 "$DURATION" | sed 's/^RESULT //')"
  record "$r" login-32 "$(logins "$CONNS" "$DURATION" | sed 's/^RESULT //')"
  sleep 3
  record "$r" get-fixed "$(fixed_gets)"
  # The flood starts first and outlasts the fixed-rate run.
  logins "$CONNS" "$(( ${DURATION%s} + 4 ))s" >"$RUN/flood.txt" & FLOOD=$!
  sleep 2
  record "$r" get-flood "$(fixed_gets)"
  wait "$FLOOD"
  record "$r" login-32-during-gets "$(sed 's/^RESULT //' "$RUN/flood.txt")"
  sleep 3
done

python3 - "$RAW" "$ROUNDS" "$DURATION" "$CONNS" "$RATE" >"$TABLE" <<'PY'
import csv, statistics, sys
raw, rounds, duration, conns, rate = sys.argv[1:6]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
def vals(r): return {k: float(v) for k, v in (kv.split("=") for kv in r["values"].split())}
order = []
for r in rows:
    if r["scenario"] not in order: order.append(r["scenario"])
print(f"bench/login.sh: {rounds} round(s) of {duration}, {conns} connections, fixed rate {rate} req/s; medians\n")
print("| scenario | req/s | p50 ms | p99 ms | req/s per round | p99 per round | peak RSS |")
print("|---|---|---|---|---|---|---|")
med = {}
for s in order:
    rs = [vals(r) for r in rows if r["scenario"] == s]
    m = {k: statistics.median(v[k] for v in rs) for k in ("rps", "p50_ms", "p99_ms")}
    med[s] = m
    rss = max(int(r["rss_kib"]) for r in rows if r["scenario"] == s) / 1024
    print(f'| {s} | {m["rps"]:.1f} | {m["p50_ms"]:.2f} | {m["p99_ms"]:.2f} | {" / ".join("%.1f" % v["rps"] for v in rs)} | {" / ".join("%.2f" % v["p99_ms"] for v in rs)} | {rss:.1f} MiB |')
if "get-fixed" in med and "get-flood" in med:
    print(f'\np99 of the fixed-rate GETs during the login flood: {med["get-flood"]["p99_ms"] / med["get-fixed"]["p99_ms"]:.2f}x its value without it')
PY
cat "$TABLE"
echo "(raw: $RAW, table: $TABLE)"
