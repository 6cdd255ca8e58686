#!/usr/bin/env bash
# Soak: 10 minutes of proxied GETs, each from a new client address (a new
# rate-limit key) with one of 50,000 distinct tokens (the verified-token
# cache churns) and one in ten with a new invalid token (the refusal cache
# churns), while resident memory is sampled every 10 s. Caches, rate-limit
# keys and pools are bounded: memory must level off, not grow with traffic.
#
#   bench/soak.sh                          # SOAK=600 (seconds) CONNS=32
#   SOAK=60 bench/soak.sh                  # quick run
#
# Writes bench/results/soak-<time>.md (RSS over time) and the raw samples.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SOAK=${SOAK:-600}; CONNS=${CONNS:-32}; TOKENS=${TOKENS:-50000}
need_packages wrk nginx-light
cargo build --release --quiet
BIN=$ROOT/target/release/portcullis
UP=$(free_port); PH=$(free_port); PS=$(free_port)
SAMPLES=$OUT/soak-raw-$TS.tsv; TABLE=$OUT/soak-$TS.md
export JWT_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
{ gateway_header "$RUN/data-soak"; bench_full_chain; } >"$RUN/soak.toml"
rm -rf "$RUN/data-soak"
# Distinct HS256 tokens (sub and jti differ), valid for the whole run.
mint_hs256 "$TOKENS" >"$RUN/soak-tokens.txt"
start_upstream "$UP"
"$BIN" serve --config "$RUN/soak.toml" >"$RUN/portcullis-soak.log" 2>&1 & PGW=$!; PIDS+=($PGW)
for p in $UP $PH $PS; do wait_port "$p"; done
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Forwarded-Proto: https' -H "Authorization: Bearer $(head -1 "$RUN/soak-tokens.txt")" "http://127.0.0.1:$PH/orders/1")
[ "$code" = 200 ] || { echo "GET /orders/1 answered $code" >&2; exit 1; }

printf 'second\trss_kib\n' >"$SAMPLES"
printf '0\t%s\n' "$(rss_kib "$PGW")" >>"$SAMPLES"
SOAK_TOKENS=$RUN/soak-tokens.txt wrk -t1 -c"$CONNS" -d"${SOAK}s" --timeout 10s -s bench/soak.lua "http://127.0.0.1:$PH" >"$RUN/soak-wrk.txt" & LOAD=$!
for s in $(seq 10 10 "$SOAK"); do
  sleep 10
  printf '%s\t%s\n' "$s" "$(rss_kib "$PGW")" | tee -a "$SAMPLES"
done
wait "$LOAD"
sleep 5
printf 'after\t%s\n' "$(rss_kib "$PGW")" >>"$SAMPLES"
python3 - "$SAMPLES" "$RUN/soak-wrk.txt" "$SOAK" "$CONNS" "$TOKENS" >"$TABLE" <<'PY'
import csv, sys
samples, wrk, soak, conns, tokens = sys.argv[1:6]
rows = list(csv.DictReader(open(samples), delimiter="\t"))
result = next(l for l in open(wrk) if l.startswith("RESULT"))
vals = dict(kv.split("=") for kv in result.split()[1:])
mib = lambda r: int(r["rss_kib"]) / 1024
timed = [r for r in rows if r["second"] != "after"]
print(f"bench/soak.sh: {soak} s, wrk -c{conns}, {float(vals['requests']):.0f} requests ({vals['rps']} req/s), "
      f"each from a new client address, {tokens} distinct valid tokens, one request in ten with a new invalid token "
      f"({vals['status_ge400']} answers >= 400, {vals['sock_err']} socket errors)\n")
print("| second | RSS MiB |")
print("|---|---|")
for r in rows:
    print(f"| {r['second']} | {mib(r):.1f} |")
first_minute = max(mib(r) for r in timed if r["second"] != "0" and int(r["second"]) <= 60)
later = max(mib(r) for r in timed if int(r["second"]) > 60) if any(int(r["second"]) > 60 for r in timed) else first_minute
print(f"\nPeak after the first minute: {later:.1f} MiB, against {first_minute:.1f} MiB in the first minute ({later / first_minute:.2f}x).")
PY
cat "$TABLE"
echo "(raw: $SAMPLES, table: $TABLE)"
