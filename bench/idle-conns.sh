#!/usr/bin/env bash
# Resident memory of Portcullis idle, then holding N idle keep-alive TLS
# connections (each has made one request), then after they close; twice, to
# show that the memory of closed connections is reused, not grown.
#
#   bench/idle-conns.sh            # N=1000
#   N=2000 bench/idle-conns.sh
#
# Builds the release binary, runs it on its embedded default in a temporary
# directory on 127.0.0.1 ports, and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
cargo build --release --quiet
dir=$(mktemp -d /tmp/portcullis-idle.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
port=$(free_port)
cat > "$dir/portcullis.toml" <<TOML
[server]
https = "127.0.0.1:$port"
http = "off"
data_dir = "data"
TOML
(cd "$dir" && exec "$OLDPWD/target/release/portcullis" serve --config portcullis.toml > log 2>&1) &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do grep -q "portcullis listening" "$dir/log" 2>/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$pid/status"; }
sleep 1
idle=$(rss)
echo "idle: $idle MiB"
python3 - "$port" "$N" "$pid" "$idle" <<'PY'
import socket, ssl, sys, time
port, n, pid, idle = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
for round in (1, 2):
    held = []
    started = time.time()
    for _ in range(n):
        s = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data[:80]
        held.append(s)
    time.sleep(2)
    held_rss = rss()
    print(f"round {round}: {n} idle keep-alive TLS connections held (opened in {time.time() - started - 2:.1f} s): "
          f"{held_rss:.1f} MiB, {(held_rss - idle) * 1024 / n:.1f} KiB per connection above idle")
    for s in held:
        s.close()
    time.sleep(2)
    print(f"round {round}: after closing them: {rss():.1f} MiB")
PY
