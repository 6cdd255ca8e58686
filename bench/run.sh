#!/usr/bin/env bash
# Load benchmark: a proxied GET through Portcullis (plain HTTP behind a
# trusted proxy, over TLS 1.3, and with a bearer token checked against a
# role, and with a rate limit counted in memory or in Redis) beside the same
# GET straight to the upstream and through nginx as a plain reverse proxy,
# all in one run.
#
#   bench/run.sh                         # 3 interleaved rounds of 10 s, 32 connections
#   ROUNDS=1 DURATION=3s bench/run.sh    # quick smoke run
#
# Installs wrk, nginx and redis-server (Debian packages) when missing, builds the release
# binary, starts everything on free 127.0.0.1 ports, stops it all at the end.
# Writes bench/results/table-<time>.md and the raw TSV next to it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10s}; CONNS=${CONNS:-32}; THREADS=${THREADS:-1}
TS=$(date +%Y%m%d-%H%M%S)
RUN=$ROOT/bench/.run; OUT=$ROOT/bench/results
mkdir -p "$RUN" "$OUT"
RAW=$OUT/raw-$TS.tsv; TABLE=$OUT/table-$TS.md

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null || ! command -v redis-server >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk nginx-light redis-server >/dev/null
fi
cargo build --release --quiet
BIN=$ROOT/target/release/portcullis

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; return 1; }

UP=$(free_port); NGP=$(free_port); PH=$(free_port); PS=$(free_port); RP=$(free_port); RH=$(free_port); RS=$(free_port)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

nginx_common='worker_processes auto; pid PIDFILE; error_log stderr warn; events { worker_connections 4096; }'
mkdir -p "$RUN/up" "$RUN/ngp"
cat >"$RUN/up/nginx.conf" <<NGINX
${nginx_common/PIDFILE/$RUN/up/nginx.pid}
http {
  access_log off; server_tokens off; default_type application/json;
  client_body_temp_path $RUN/up/cb; proxy_temp_path $RUN/up/p; fastcgi_temp_path $RUN/up/f; uwsgi_temp_path $RUN/up/u; scgi_temp_path $RUN/up/s;
  keepalive_timeout 65s; keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP backlog=4096;
    location / { return 200 '{"id":1,"name":"item","owner":"alice","price":9.99}'; }
  }
}
NGINX
cat >"$RUN/ngp/nginx.conf" <<NGINX
${nginx_common/PIDFILE/$RUN/ngp/nginx.pid}
http {
  access_log off; server_tokens off;
  client_body_temp_path $RUN/ngp/cb; proxy_temp_path $RUN/ngp/p; fastcgi_temp_path $RUN/ngp/f; uwsgi_temp_path $RUN/ngp/u; scgi_temp_path $RUN/ngp/s;
  keepalive_timeout 65s; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$NGP backlog=4096;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
cat >"$RUN/portcullis.toml" <<TOML
# Benchmark: the HTTP listener serves the gateway to a trusted proxy (the load
# generator on 127.0.0.1), the HTTPS listener serves it over TLS.
[server]
https = "127.0.0.1:$PS"
http = "127.0.0.1:$PH"
http_behind_proxy = true
trusted_proxies = ["127.0.0.1"]
data_dir = "$RUN/data"

[log]
level = "warn"

[[route]]
path = "/items/{id}"
methods = ["GET"]
upstream = "http://127.0.0.1:$UP"
auth = "none"

# The full token path: EdDSA bearer token verified, role checked, identity forwarded.
[[route]]
path = "/orders/{id}"
methods = ["GET"]
upstream = "http://127.0.0.1:$UP"
roles = ["user"]

# A generous per-address limit (never refuses here): the cost of counting.
[[route]]
path = "/limited/{id}"
methods = ["GET"]
upstream = "http://127.0.0.1:$UP"
auth = "none"
rate_limit = [{ rate = "1000000/second", key = "ip" }]

# POST with a 40-byte JSON body checked against its schema (the anchors' scenario b).
[[route]]
path = "/items"
methods = ["POST"]
upstream = "http://127.0.0.1:$UP"
auth = "none"
validate.body = { type = "object", required = ["name", "price"], properties = { name = { type = "string", maxLength = 80 }, price = { type = "number", minimum = 0 } } }
TOML
# The same gateway with its counters in Redis.
mkdir -p "$RUN/redis"
sed -e "s/127.0.0.1:$PS/127.0.0.1:$RS/; s/127.0.0.1:$PH/127.0.0.1:$RH/; s#$RUN/data#$RUN/data-redis#" "$RUN/portcullis.toml" >"$RUN/portcullis-redis.toml"
printf '\n[rate_limit]\nstore = "redis://127.0.0.1:%s/0"\n' "$RP" >>"$RUN/portcullis-redis.toml"
rm -rf "$RUN/data"
echo "bench-password-not-common-7f3e" | "$BIN" users add bench --role user --password-stdin --config "$RUN/portcullis.toml" >/dev/null

nginx -p "$RUN/up/" -e stderr -c "$RUN/up/nginx.conf" -g 'daemon off;' >"$RUN/up.log" 2>&1 & PIDS+=($!)
nginx -p "$RUN/ngp/" -e stderr -c "$RUN/ngp/nginx.conf" -g 'daemon off;' >"$RUN/ngp.log" 2>&1 & PIDS+=($!)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$RUN/redis" >"$RUN/redis.log" 2>&1 & PIDS+=($!)
"$BIN" serve --config "$RUN/portcullis.toml" >"$RUN/portcullis.log" 2>&1 & PGW=$!; PIDS+=($PGW)
"$BIN" serve --config "$RUN/portcullis-redis.toml" >"$RUN/portcullis-redis.log" 2>&1 & PIDS+=($!)
for p in $UP $NGP $PH $PS $RP $RH $RS; do wait_port "$p"; done

TOKEN=$(curl -sk "https://127.0.0.1:$PS/auth/login" -H 'content-type: application/json' \
  -d '{"username":"bench","password":"bench-password-not-common-7f3e"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
STACKS=(direct nginx-proxy portcullis portcullis-tls portcullis-jwt portcullis-rl-memory portcullis-rl-redis nginx-proxy-post portcullis-post)
declare -A URL=(
  [direct]="http://127.0.0.1:$UP"
  [nginx-proxy]="http://127.0.0.1:$NGP"
  [portcullis]="http://127.0.0.1:$PH"
  [portcullis-tls]="https://127.0.0.1:$PS"
  [portcullis-jwt]="http://127.0.0.1:$PH"
  [portcullis-rl-memory]="http://127.0.0.1:$PH"
  [portcullis-rl-redis]="http://127.0.0.1:$RH"
  [nginx-proxy-post]="http://127.0.0.1:$NGP"
  [portcullis-post]="http://127.0.0.1:$PH"
)
declare -A PATHS=([portcullis-jwt]=/orders/1 [portcullis-rl-memory]=/limited/1 [portcullis-rl-redis]=/limited/1)
declare -A TOKENS=([portcullis-jwt]=$TOKEN)
ITEM='{"name":"blue widget 001","price":12.50}'
declare -A METHODS=([nginx-proxy-post]=POST [portcullis-post]=POST)
declare -A BODIES=([nginx-proxy-post]=$ITEM [portcullis-post]=$ITEM)
PATHS[nginx-proxy-post]=/items; PATHS[portcullis-post]=/items
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$PGW/status"; }

echo "# checks"
for s in "${STACKS[@]}"; do
  args=(-X "${METHODS[$s]:-GET}")
  if [ -n "${BODIES[$s]:-}" ]; then args+=(-H 'Content-Type: application/json' --data "${BODIES[$s]}"); fi
  code=$(curl -sk -o /dev/null -w '%{http_code}' "${args[@]}" -H 'X-Forwarded-Proto: https' -H "Authorization: Bearer ${TOKENS[$s]:-none}" "${URL[$s]}${PATHS[$s]:-/items/1}")
  echo "  $s -> $code"; [ "$code" = 200 ] || { echo "unexpected status from $s" >&2; exit 1; }
done
RSS_IDLE=$(rss_kib)
echo "# warm-up"
for s in "${STACKS[@]}"; do WRK_METHOD=${METHODS[$s]:-GET} WRK_BODY=${BODIES[$s]:-} WRK_PATH=${PATHS[$s]:-/items/1} WRK_TOKEN=${TOKENS[$s]:-} wrk -t"$THREADS" -c"$CONNS" -d2s -s bench/wrk.lua "${URL[$s]}" >/dev/null; done

printf 'round\tstack\trps\tp50_ms\tp99_ms\trequests\tstatus_ge400\tsock_err\trss_kib\n' >"$RAW"
for r in $(seq 1 "$ROUNDS"); do
  for s in "${STACKS[@]}"; do
    line=$(WRK_METHOD=${METHODS[$s]:-GET} WRK_BODY=${BODIES[$s]:-} WRK_PATH=${PATHS[$s]:-/items/1} WRK_TOKEN=${TOKENS[$s]:-} wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 10s -s bench/wrk.lua "${URL[$s]}" | grep '^RESULT')
    vals=$(echo "$line" | sed 's/[a-z0-9_]*=//g; s/^RESULT //')
    rss=-; case $s in portcullis-rl-redis) ;; portcullis*) rss=$(rss_kib) ;; esac
    printf '%s\t%s\t%s\t%s\n' "$r" "$s" "$(echo "$vals" | tr ' ' '\t')" "$rss" >>"$RAW"
    echo "  round $r $s: ${line#RESULT } rss_kib=$rss"
    sleep 1
  done
done

python3 - "$RAW" "$RSS_IDLE" "$ROUNDS" "$DURATION" "$CONNS" >"$TABLE" <<'PY'
import csv, statistics, sys
raw, rss_idle, rounds, duration, conns = sys.argv[1:6]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
stacks = []
for r in rows:
    if r["stack"] not in stacks: stacks.append(r["stack"])
med = {}
for s in stacks:
    rs = [r for r in rows if r["stack"] == s]
    med[s] = {k: statistics.median(float(r[k]) for r in rs) for k in ("rps", "p50_ms", "p99_ms")}
    med[s]["rounds"] = " / ".join(f'{float(r["rps"]):.0f}' for r in rs)
    med[s]["errors"] = sum(int(r["status_ge400"]) + int(r["sock_err"]) for r in rs)
    rss = [int(r["rss_kib"]) for r in rs if r["rss_kib"] not in ("-", "")]
    med[s]["rss"] = f"{max(rss)/1024:.1f} MiB" if rss else "-"
print(f"GET /items/1 (portcullis-jwt: GET /orders/1 with an EdDSA bearer token and a role rule; portcullis-rl-*: GET /limited/1 with a per-address limit counted in memory or in Redis; *-post: POST /items with a 40-byte JSON body, validated against its schema by Portcullis; RSS is the first gateway's), wrk -c{conns} -d{duration}, median of {rounds} interleaved round(s); Portcullis idle RSS {int(rss_idle)/1024:.1f} MiB\n")
print("| stack | req/s (median) | p50 ms | p99 ms | x direct | x nginx-proxy | req/s per round | errors | peak RSS under load |")
print("|---|---|---|---|---|---|---|---|---|")
for s in stacks:
    m = med[s]
    print(f'| {s} | {m["rps"]:.0f} | {m["p50_ms"]:.2f} | {m["p99_ms"]:.2f} | {m["rps"]/med["direct"]["rps"]:.2f} | {m["rps"]/med["nginx-proxy"]["rps"]:.2f} | {m["rounds"]} | {m["errors"]} | {m["rss"]} |')
PY
cat "$TABLE"
echo "(raw: $RAW, table: $TABLE)"
