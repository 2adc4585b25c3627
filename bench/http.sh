#!/usr/bin/env bash
# HTTP hello world: ivy serve (http app, one worker) against the bare io_uring loop
# (build/bench/raw_http_server, the limit of ivy's design), nginx (one worker, `return 200`),
# and the same hello server on gevent and on eventlet, all with the same client in one run:
# wrk -t1 -c64, keep-alive, then 16-deep pipelined (a wrk Lua script). Servers run on one CPU,
# wrk on another; each server's CPU time (every process and thread of it) is read from
# /proc/PID/stat before and after a run for CPU-microseconds per request.
#
# Env: DURATION (seconds per run, default 10), ROUNDS (default 1; with more, every figure is
# the median over rounds, servers interleaved within each), IVY (default build/apps/ivy),
# SERVER_CPU / CLIENT_CPU (default 0 and the last CPU).
# Prints `name: value unit` lines; ratios compare figures of this run only.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-1}
IVY=${IVY:-build/apps/ivy}
RAW=build/bench/raw_http_server
NCPU=$(nproc)
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-$((NCPU - 1))}
PY=/usr/bin/python3 # Debian's python3-gevent and python3-eventlet live here, not in a venv
HZ=$(getconf CLK_TCK)

for f in "$IVY" "$RAW"; do
  [ -x "$f" ] || { echo "http.sh: $f missing: run make first" >&2; exit 1; }
done
scripts/deps.sh wrk nginx-light python3-gevent python3-eventlet

TMP=$(mktemp -d /tmp/ivy-bench-http.XXXXXX)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

# ---- peers ---------------------------------------------------------------------------------
cat >"$TMP/pipeline.lua" <<'EOF'
-- 16 requests per write; wrk counts each response.
init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil, "/") end
  req = table.concat(r)
end
request = function() return req end
EOF

cat >"$TMP/hello.py" <<'EOF'
# The hello server on gevent or eventlet: a green thread per connection answering every
# request head in what it receives (keep-alive, pipelining), Date formatted once per second.
import socket, sys, time
from email.utils import formatdate
flavour, port = sys.argv[1], int(sys.argv[2])
cache = [0, b""]
def response():
    now = int(time.time())
    if cache[0] != now:
        cache[0] = now
        cache[1] = (b"HTTP/1.1 200 OK\r\nServer: " + flavour.encode() + b"\r\nDate: " +
                    formatdate(now, usegmt=True).encode() +
                    b"\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!")
    return cache[1]
def handle(sock, addr=None):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    carry = b""
    while True:
        data = sock.recv(65536)
        if not data:
            break
        buf = carry + data
        n = buf.count(b"\r\n\r\n")
        if n:
            carry = buf[buf.rfind(b"\r\n\r\n") + 4:]
            sock.sendall(response() * n)
        else:
            carry = buf
    sock.close()
if flavour == "gevent":
    from gevent.server import StreamServer
    StreamServer(("127.0.0.1", port), handle, backlog=4096).serve_forever()
else:
    import eventlet
    srv = eventlet.listen(("127.0.0.1", port), backlog=4096)
    pool = eventlet.GreenPool(100000)
    while True:
        sock, addr = srv.accept()
        pool.spawn_n(handle, sock, addr)
EOF

nginx_conf() { # port
  mkdir -p "$TMP/nginx"
  cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  default_type text/plain;
  keepalive_requests 100000000; # the default (1000) would make wrk reconnect: not the test
  client_body_temp_path $TMP/nginx; proxy_temp_path $TMP/nginx; fastcgi_temp_path $TMP/nginx;
  uwsgi_temp_path $TMP/nginx; scgi_temp_path $TMP/nginx;
  server {
    listen 127.0.0.1:$1 reuseport;
    location / { return 200 "Hello, World!"; }
  }
}
EOF
}

PORT=$((20000 + RANDOM % 20000))
free_port() {
  while ss -Htln "sport = :$PORT" | grep -q .; do PORT=$((PORT + 1)); done
}

# Starts server $1 on CPUs $2 (ivy: $3 workers), sets SERVER_PID and PORT, waits until it answers.
start() {
  PORT=$((PORT + 1))
  free_port
  case $1 in
  ivy) taskset -c "$2" "$IVY" serve --app http --workers "$3" --listen "127.0.0.1:$PORT" \
         >"$TMP/server.log" 2>&1 & ;;
  raw) taskset -c "$2" "$RAW" "$PORT" >"$TMP/server.log" 2>&1 & ;;
  nginx) nginx_conf "$PORT"
         taskset -c "$2" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/server.log" 2>&1 & ;;
  gevent | eventlet) taskset -c "$2" "$PY" "$TMP/hello.py" "$1" "$PORT" >"$TMP/server.log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$PORT/" 2>/dev/null | grep -q "Hello, World!" && return 0
    sleep 0.05
  done
  echo "http.sh: $1 did not answer on port $PORT:" >&2
  cat "$TMP/server.log" >&2
  exit 1
}

stop() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# CPU ticks used so far by the server: the process we started and all its descendants.
server_ticks() {
  local pids=$SERVER_PID kids p t=0
  kids=$(pgrep -P "$SERVER_PID" || true)
  pids="$pids $kids"
  for p in $pids; do
    # Fields after the ")" that ends the command name (which may hold spaces): utime, stime.
    [ -r "/proc/$p/stat" ] && t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}

# Runs wrk against the server for mode $1 (ka|pipe); prints "rps cpu_us_per_req wrk_cpu_pct".
measure() {
  local script=() out t0 t1 rps reqs
  [ "$1" = pipe ] && script=(-s "$TMP/pipeline.lua")
  taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d1s "${script[@]}" "http://127.0.0.1:$PORT/" >/dev/null
  t0=$(server_ticks)
  out=$(taskset -c "$CLIENT_CPU" /usr/bin/time -f "wrkcpu %P" \
        wrk -t1 -c64 -d"${DURATION}s" "${script[@]}" "http://127.0.0.1:$PORT/" 2>&1)
  t1=$(server_ticks)
  if grep -qE "Non-2xx|Socket errors" <<<"$out"; then
    echo "http.sh: wrk reported errors:" >&2
    grep -E "Non-2xx|Socket errors" <<<"$out" >&2
  fi
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v r="$rps" -v n="$reqs" -v dt=$((t1 - t0)) -v hz="$HZ" -v w="$(awk '/^wrkcpu/ {print $2+0}' <<<"$out")" \
    'BEGIN { printf "%.0f %.2f %d\n", r, (n > 0 ? dt * 1e6 / hz / n : 0), w }'
}

median() { sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

declare -A R # R[name.mode] = one line per round: "rps cpu wrkcpu"
SERVERS=(ivy raw nginx gevent eventlet)
for round in $(seq "$ROUNDS"); do
  for s in "${SERVERS[@]}"; do
    start "$s" "$SERVER_CPU" 1
    for mode in ka pipe; do
      R[$s.$mode]+="$(measure "$mode")"$'\n'
    done
    stop
  done
  start ivy "0,1" 2 # two workers: CPUs 0 and 1, whatever the client's
  R[ivy2.ka]+="$(measure ka)"$'\n'
  stop
done

col() { printf '%s' "${R[$1]}" | awk -v c="$2" 'NF {print $c}' | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }

echo "http: wrk -t1 -c64 -d${DURATION}s, servers on cpu $SERVER_CPU, wrk on cpu $CLIENT_CPU, $ROUNDS round(s), medians"
for mode in ka pipe; do
  p=""
  [ $mode = pipe ] && p="pipelined_"
  for s in "${SERVERS[@]}"; do
    printf '%s%s_rps: %s req/s\n' "$p" "$s" "$(col "$s.$mode" 1)"
  done
  for s in "${SERVERS[@]}"; do
    printf '%s%s_cpu_us_per_req: %s us\n' "$p" "$s" "$(col "$s.$mode" 2)"
  done
  ivy=$(col "ivy.$mode" 1)
  printf '%srps_vs_raw: %s\n' "$p" "$(ratio "$ivy" "$(col "raw.$mode" 1)")"
  printf '%srps_vs_nginx: %s\n' "$p" "$(ratio "$ivy" "$(col "nginx.$mode" 1)")"
  printf '%srps_vs_gevent: %s\n' "$p" "$(ratio "$ivy" "$(col "gevent.$mode" 1)")"
  printf '%scpu_vs_nginx: %s\n' "$p" "$(ratio "$(col "ivy.$mode" 2)" "$(col "nginx.$mode" 2)")"
  printf '%swrk_cpu_with_ivy: %s %%\n' "$p" "$(col "ivy.$mode" 3)"
done
printf 'ivy_2w_rps: %s req/s\n' "$(col ivy2.ka 1)"
printf 'scaling_2w: %s\n' "$(ratio "$(col ivy2.ka 1)" "$(col ivy.ka 1)")"
wrk2=$(col ivy2.ka 3)
if [ "$NCPU" -lt 4 ] || [ "${wrk2%.*}" -ge 90 ]; then
  echo "scaling_2w_note: client-bound: one wrk thread at ${wrk2}% of a CPU on $NCPU CPUs (it shares" \
       "cpu $CLIENT_CPU with a worker); the target (>= 1.8) needs a client with CPUs to spare"
fi
