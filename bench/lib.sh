# Shared by the bench/ scripts: ports, processes and the nginx upstream.
# Source it after `cd` to the repository root; sets ROOT, RUN, OUT, TS.
ROOT=$PWD
RUN=$ROOT/bench/.run; OUT=$ROOT/bench/results
TS=$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN" "$OUT"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Debian packages the scripts need (wrk, nginx-light, redis-server, haproxy…).
need_packages() {
  local missing=()
  for p in "$@"; do
    case $p in nginx-light) command -v nginx >/dev/null || missing+=("$p") ;; *) command -v "$p" >/dev/null || missing+=("$p") ;; esac
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
# oha: fixed-rate, latency-corrected load (built from crates.io when missing).
need_oha() {
  OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
  [ -x "$OHA" ] || cargo install oha --locked --quiet
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; return 1; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# cpu_ticks PID...: user + system CPU time, in clock ticks, of each PID and
# its child processes (nginx's workers), summed.
cpu_ticks() {
  local t=0 p
  for p in "$@" $(for q in "$@"; do pgrep -P "$q"; done); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

NGINX_COMMON='worker_processes auto; pid PIDFILE; error_log stderr warn; events { worker_connections 4096; }'
# start_upstream PORT: nginx answering every request with a fixed 50-byte JSON
# (its master's PID in UPSTREAM_PID).
start_upstream() {
  mkdir -p "$RUN/up"
  cat >"$RUN/up/nginx.conf" <<NGINX
${NGINX_COMMON/PIDFILE/$RUN/up/nginx.pid}
http {
  access_log off; server_tokens off; default_type application/json;
  client_body_temp_path $RUN/up/cb; proxy_temp_path $RUN/up/p; fastcgi_temp_path $RUN/up/f; uwsgi_temp_path $RUN/up/u; scgi_temp_path $RUN/up/s;
  keepalive_timeout 65s; keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$1 backlog=4096;
    location / { return 200 '{"id":1,"name":"item","owner":"alice","price":9.99}'; }
  }
}
NGINX
  nginx -p "$RUN/up/" -e stderr -c "$RUN/up/nginx.conf" -g 'daemon off;' >"$RUN/up.log" 2>&1 & UPSTREAM_PID=$!; PIDS+=($UPSTREAM_PID)
}

# gateway_header DATA_DIR: the [server] and [log] sections of every benchmark
# gateway: the HTTP listener on $PH serves the gateway to the trusted load
# generator on 127.0.0.1 (as behind a TLS terminator), the HTTPS listener on
# $PS serves it over TLS; the access log is off.
gateway_header() {
  cat <<TOML
[server]
https = "127.0.0.1:$PS"
http = "127.0.0.1:$PH"
http_behind_proxy = true
trusted_proxies = ["127.0.0.1"]
data_dir = "$1"

[log]
level = "warn"
TOML
}

# bench_full_chain: GET /orders/{id} to the nginx upstream on $UP through
# the full chain: bearer token verified (EdDSA, issued by Portcullis; or
# HS256 from the shared-secret issuer in $JWT_SECRET_KEY, like HAProxy's),
# role checked, a per-address limit that never refuses, identity forwarded.
bench_full_chain() {
  cat <<TOML

[[route]]
path = "/orders/{id}"
methods = ["GET"]
upstream = "http://127.0.0.1:$UP"
roles = ["user"]
rate_limit = [{ rate = "1000000/second", key = "ip" }]

[[tokens.shared_secret]]
secret_env = "JWT_SECRET_KEY"
roles_claim = "role"
TOML
}

# bench_routes: the routes every load benchmark serves, to the nginx
# upstream on $UP (GET, the full token chain, a rate-limited GET and a
# validated POST).
bench_routes() {
  bench_full_chain
  cat <<TOML

[[route]]
path = "/items/{id}"
methods = ["GET"]
upstream = "http://127.0.0.1:$UP"
auth = "none"

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
}

# mint_hs256 COUNT: COUNT distinct HS256 access tokens (sub user<i>, role
# user, valid 2 hours) signed with $JWT_SECRET_KEY, one a line.
mint_hs256() {
  python3 - "$1" <<'PY'
import base64, hashlib, hmac, json, os, sys, time, uuid
key = os.environ["JWT_SECRET_KEY"].encode()
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
head = b64(b'{"alg":"HS256","typ":"JWT"}')
for i in range(int(sys.argv[1])):
    claims = {"sub": f"user{i}", "role": "user", "type": "access", "jti": str(uuid.uuid4()), "iat": now, "nbf": now, "exp": now + 7200}
    body = head + "." + b64(json.dumps(claims, separators=(",", ":")).encode())
    print(body + "." + b64(hmac.new(key, body.encode(), hashlib.sha256).digest()))
PY
}
