#!/usr/bin/env bash
# Load benchmark: a proxied GET through Portcullis (plain HTTP behind a
# trusted proxy, over TLS 1.3, with an EdDSA or HS256 bearer token checked
# against a role and a rate limit, with a rate limit counted in memory or in
# Redis) beside the same GET straight to the upstream, through nginx as a
# plain reverse proxy and through HAProxy checking an HS256 JWT, a role and a
# per-address rate limit (the anchors' configuration), all in one run.
#
#   bench/run.sh                         # 3 interleaved rounds of 10 s, 32 connections
#   ROUNDS=1 DURATION=3s bench/run.sh    # quick smoke run
#   ONLY="portcullis-rl-memory portcullis-rl-redis" bench/run.sh   # some rows, beside direct and nginx-proxy
#
# Installs wrk, nginx, redis-server and haproxy (Debian packages) when missing, builds the release
# binary, starts everything on free 127.0.0.1 ports, stops it all at the end.
# Writes bench/results/table-<time>.md and the raw TSV next to it.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10s}; CONNS=${CONNS:-32}; THREADS=${THREADS:-1}
RAW=$OUT/raw-$TS.tsv; TABLE=$OUT/table-$TS.md

need_packages wrk nginx-light redis-server haproxy
cargo build --release --quiet
BIN=$ROOT/target/release/portcullis

UP=$(free_port); NGP=$(free_port); PH=$(free_port); PS=$(free_port); RP=$(free_port); RH=$(free_port); RS=$(free_port); HP=$(free_port); LH=$(free_port); LS=$(free_port)
export JWT_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')

start_upstream "$UP"
mkdir -p "$RUN/ngp"
cat >"$RUN/ngp/nginx.conf" <<NGINX
${NGINX_COMMON/PIDFILE/$RUN/ngp/nginx.pid}
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
{ gateway_header "$RUN/data"; bench_routes; } >"$RUN/portcullis.toml"
# The same gateway with its counters in Redis.
mkdir -p "$RUN/redis"
sed -e "s/127.0.0.1:$PS/127.0.0.1:$RS/; s/127.0.0.1:$PH/127.0.0.1:$RH/; s#$RUN/data#$RUN/data-redis#" "$RUN/portcullis.toml" >"$RUN/portcullis-redis.toml"
printf '\n[rate_limit]\nstore = "redis://127.0.0.1:%s/0"\n' "$RP" >>"$RUN/portcullis-redis.toml"
# And with leases (up to 32 tokens per key and round trip).
sed -e "s/127.0.0.1:$RS/127.0.0.1:$LS/; s/127.0.0.1:$RH/127.0.0.1:$LH/; s#$RUN/data-redis#$RUN/data-lease#" "$RUN/portcullis-redis.toml" >"$RUN/portcullis-lease.toml"
printf 'lease = 32\n' >>"$RUN/portcullis-lease.toml"
rm -rf "$RUN/data" "$RUN/data-redis" "$RUN/data-lease"
echo "bench-password-not-common-7f3e" | "$BIN" users add bench --role user --password-stdin --config "$RUN/portcullis.toml" >/dev/null

# HAProxy doing the anchors' job (HS256 JWT, role, per-address rate limit,
# security headers): the anchors' own configuration, on this run's ports.
sed -e "s/127.0.0.1:8100/127.0.0.1:$HP/; s/127.0.0.1:9000/127.0.0.1:$UP/" "$ROOT/bench/haproxy.cfg" >"$RUN/haproxy.cfg"
haproxy -db -f "$RUN/haproxy.cfg" >"$RUN/haproxy.log" 2>&1 & PHA=$!; PIDS+=($PHA)
nginx -p "$RUN/ngp/" -e stderr -c "$RUN/ngp/nginx.conf" -g 'daemon off;' >"$RUN/ngp.log" 2>&1 & PNG=$!; PIDS+=($PNG)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$RUN/redis" >"$RUN/redis.log" 2>&1 & PRD=$!; PIDS+=($PRD)
"$BIN" serve --config "$RUN/portcullis.toml" >"$RUN/portcullis.log" 2>&1 & PGW=$!; PIDS+=($PGW)
"$BIN" serve --config "$RUN/portcullis-redis.toml" >"$RUN/portcullis-redis.log" 2>&1 & PGR=$!; PIDS+=($PGR)
"$BIN" serve --config "$RUN/portcullis-lease.toml" >"$RUN/portcullis-lease.log" 2>&1 & PGL=$!; PIDS+=($PGL)
for p in $UP $NGP $PH $PS $RP $RH $RS $HP $LH $LS; do wait_port "$p"; done

TOKEN=$(curl -sk "https://127.0.0.1:$PS/auth/login" -H 'content-type: application/json' \
  -d '{"username":"bench","password":"bench-password-not-common-7f3e"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
ALL_STACKS=(direct nginx-proxy portcullis portcullis-tls haproxy-jwt portcullis-jwt portcullis-hs256 portcullis-rl-memory portcullis-rl-redis portcullis-rl-redis-lease nginx-proxy-post portcullis-post)
# ONLY="portcullis-rl-memory portcullis-rl-redis": those rows beside the two references.
if [ -n "${ONLY:-}" ]; then read -ra STACKS <<<"direct nginx-proxy $ONLY"; else STACKS=("${ALL_STACKS[@]}"); fi
declare -A URL=(
  [direct]="http://127.0.0.1:$UP"
  [nginx-proxy]="http://127.0.0.1:$NGP"
  [portcullis]="http://127.0.0.1:$PH"
  [portcullis-tls]="https://127.0.0.1:$PS"
  [portcullis-jwt]="http://127.0.0.1:$PH"
  [haproxy-jwt]="http://127.0.0.1:$HP"
  [portcullis-hs256]="http://127.0.0.1:$PH"
  [portcullis-rl-memory]="http://127.0.0.1:$PH"
  [portcullis-rl-redis]="http://127.0.0.1:$RH"
  [portcullis-rl-redis-lease]="http://127.0.0.1:$LH"
  [nginx-proxy-post]="http://127.0.0.1:$NGP"
  [portcullis-post]="http://127.0.0.1:$PH"
)
HS256=$(mint_hs256 1)
declare -A PATHS=([portcullis-jwt]=/orders/1 [portcullis-hs256]=/orders/1 [portcullis-rl-memory]=/limited/1 [portcullis-rl-redis]=/limited/1 [portcullis-rl-redis-lease]=/limited/1)
declare -A TOKENS=([portcullis-jwt]=$TOKEN [portcullis-hs256]=$HS256 [haproxy-jwt]=$HS256)
ITEM='{"name":"blue widget 001","price":12.50}'
declare -A METHODS=([nginx-proxy-post]=POST [portcullis-post]=POST)
declare -A BODIES=([nginx-proxy-post]=$ITEM [portcullis-post]=$ITEM)
PATHS[nginx-proxy-post]=/items; PATHS[portcullis-post]=/items

echo "# checks"
for s in "${STACKS[@]}"; do
  args=(-X "${METHODS[$s]:-GET}")
  if [ -n "${BODIES[$s]:-}" ]; then args+=(-H 'Content-Type: application/json' --data "${BODIES[$s]}"); fi
  code=$(curl -sk -o /dev/null -w '%{http_code}' "${args[@]}" -H 'X-Forwarded-Proto: https' -H "Authorization: Bearer ${TOKENS[$s]:-none}" "${URL[$s]}${PATHS[$s]:-/items/1}")
  echo "  $s -> $code"; [ "$code" = 200 ] || { echo "unexpected status from $s" >&2; exit 1; }
done
RSS_IDLE=$(rss_kib "$PGW")
echo "# warm-up"
for s in "${STACKS[@]}"; do WRK_METHOD=${METHODS[$s]:-GET} WRK_BODY=${BODIES[$s]:-} WRK_PATH=${PATHS[$s]:-/items/1} WRK_TOKEN=${TOKENS[$s]:-} wrk -t"$THREADS" -c"$CONNS" -d2s -s bench/wrk.lua "${URL[$s]}" >/dev/null; done

# The processes whose CPU time a row's requests cost (the proxy in front of
# the upstream; with Redis, the gateway and the Redis server together).
declare -A CPU_OF=([direct]="$UPSTREAM_PID" [nginx-proxy]=$PNG [nginx-proxy-post]=$PNG [haproxy-jwt]=$PHA [portcullis-rl-redis]="$PGR $PRD" [portcullis-rl-redis-lease]="$PGL $PRD")
printf 'round\tstack\trps\tp50_ms\tp99_ms\trequests\tstatus_ge400\tsock_err\trss_kib\tcpu_us_per_req\n' >"$RAW"
for r in $(seq 1 "$ROUNDS"); do
  for s in "${STACKS[@]}"; do
    cpu_pids=${CPU_OF[$s]:-$PGW}; before=$(cpu_ticks $cpu_pids)
    line=$(WRK_METHOD=${METHODS[$s]:-GET} WRK_BODY=${BODIES[$s]:-} WRK_PATH=${PATHS[$s]:-/items/1} WRK_TOKEN=${TOKENS[$s]:-} wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 10s -s bench/wrk.lua "${URL[$s]}" | grep '^RESULT')
    vals=$(echo "$line" | sed 's/[a-z0-9_]*=//g; s/^RESULT //')
    ticks=$(( $(cpu_ticks $cpu_pids) - before ))
    requests=$(echo "$line" | sed 's/.*requests=\([0-9]*\).*/\1/')
    cpu=$(python3 -c "print(f'{$ticks * 1e6 / $(getconf CLK_TCK) / max($requests, 1):.1f}')")
    rss=-; case $s in portcullis-rl-redis*) ;; portcullis*) rss=$(rss_kib "$PGW") ;; esac
    printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$s" "$(echo "$vals" | tr ' ' '\t')" "$rss" "$cpu" >>"$RAW"
    echo "  round $r $s: ${line#RESULT } rss_kib=$rss cpu_us_per_req=$cpu"
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
    med[s] = {k: statistics.median(float(r[k]) for r in rs) for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")}
    med[s]["rounds"] = " / ".join(f'{float(r["rps"]):.0f}' for r in rs)
    med[s]["errors"] = sum(int(r["status_ge400"]) + int(r["sock_err"]) for r in rs)
    rss = [int(r["rss_kib"]) for r in rs if r["rss_kib"] not in ("-", "")]
    med[s]["rss"] = f"{max(rss)/1024:.1f} MiB" if rss else "-"
print(f"GET /items/1 (portcullis-jwt, portcullis-hs256: GET /orders/1 with an EdDSA or HS256 bearer token, a role rule and a per-address limit; haproxy-jwt: the anchors' HAProxy, HS256 token, role, per-address limit; portcullis-rl-*: GET /limited/1 with a per-address limit counted in memory or in Redis; *-post: POST /items with a 40-byte JSON body, validated against its schema by Portcullis; RSS is the first gateway's), wrk -c{conns} -d{duration}, median of {rounds} interleaved round(s); Portcullis idle RSS {int(rss_idle)/1024:.1f} MiB\n")
print("CPU µs/req: user + system CPU time of the proxy's process(es) during the round, divided by the requests served (for direct, the upstream nginx's; for portcullis-rl-redis and -lease, the gateway's plus the Redis server's).\n")
print("| stack | req/s (median) | p50 ms | p99 ms | x direct | x nginx-proxy | CPU µs/req | req/s per round | errors | peak RSS under load |")
print("|---|---|---|---|---|---|---|---|---|---|")
for s in stacks:
    m = med[s]
    print(f'| {s} | {m["rps"]:.0f} | {m["p50_ms"]:.2f} | {m["p99_ms"]:.2f} | {m["rps"]/med["direct"]["rps"]:.2f} | {m["rps"]/med["nginx-proxy"]["rps"]:.2f} | {m["cpu_us_per_req"]:.1f} | {m["rounds"]} | {m["errors"]} | {m["rss"]} |')
PY
cat "$TABLE"
echo "(raw: $RAW, table: $TABLE)"
