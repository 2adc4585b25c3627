#!/usr/bin/env bash
# Requests lost per worker crash: ivy serve and nginx (2 workers each, reuseport), both under
# wrk load while one worker is kill -9'ed every 0.5 s, with keep-alive and with
# Connection: close. A failed request is any wrk socket error or non-2xx response.
#
# Prints: crash_fail_per_kill_{ivy,nginx}_{keepalive,close} and the ratios ivy / nginx.
# DURATION (seconds, default 10) and CONNS (default 32) may be set in the environment; IVY
# names the ivy binary (default build/apps/ivy, built in Release when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh wrk nginx-light >/dev/null
IVY=${IVY:-build/apps/ivy}
[ -x "$IVY" ] || make --no-print-directory release >/dev/null

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
tmp=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wrk output -> failed requests (socket errors + non-2xx)
failures() {
  awk '/Socket errors/ { gsub(",", ""); n += $4 + $6 + $8 + $10 }
       /Non-2xx/ { n += $NF } END { print n + 0 }' "$1"
}

# run_case NAME PORT "WORKER_PIDS_COMMAND" [wrk header args]
run_case() {
  local name=$1 port=$2 pids_cmd=$3; shift 3
  wrk -t1 -c"$CONNS" -d"${DURATION}s" "$@" "http://127.0.0.1:$port/" >"$tmp/$name.wrk" 2>&1 &
  local wrk_pid=$! kills=0
  sleep 0.5
  while kill -0 "$wrk_pid" 2>/dev/null; do
    victim=$(eval "$pids_cmd" | shuf -n1 || true)
    if [ -n "$victim" ] && kill -9 "$victim" 2>/dev/null; then kills=$((kills + 1)); fi
    sleep 0.5
  done
  wait "$wrk_pid" || true
  local failed; failed=$(failures "$tmp/$name.wrk")
  local reqs; reqs=$(awk '/requests in/ { print $1 }' "$tmp/$name.wrk")
  echo "$name: $failed failed of ${reqs:-0} requests, $kills kills ($(grep -h "Socket errors" "$tmp/$name.wrk" || echo no socket errors))" >&2
  awk -v f="$failed" -v k="$kills" 'BEGIN { if (k > 0) printf "%.2f\n", f / k; else print "n/a" }'
}

# ---- ivy
ivy_port=$(free_port)
"$IVY" serve --app http --workers 2 --listen "127.0.0.1:$ivy_port" --quiet &
ivy_sup=$!
sleep 1
ivy_workers="pgrep -P $ivy_sup"
ivy_ka=$(run_case ivy_keepalive "$ivy_port" "$ivy_workers")
ivy_close=$(run_case ivy_close "$ivy_port" "$ivy_workers" -H "Connection: close")
kill -TERM "$ivy_sup"; wait "$ivy_sup" || true

# ---- nginx
ng_port=$(free_port)
mkdir -p "$tmp/ng"
cat >"$tmp/nginx.conf" <<EOF
worker_processes 2;
pid $tmp/nginx.pid;
error_log $tmp/ng/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000; # as bench/http.sh: the default (1000) would reconnect on its own
  client_body_temp_path $tmp/ng; proxy_temp_path $tmp/ng; fastcgi_temp_path $tmp/ng;
  uwsgi_temp_path $tmp/ng; scgi_temp_path $tmp/ng;
  server { listen 127.0.0.1:$ng_port reuseport; location / { return 200 "Hello, World!"; } }
}
EOF
nginx -c "$tmp/nginx.conf" -p "$tmp/ng"
sleep 0.5
ng_master=$(cat "$tmp/nginx.pid")
ng_workers="pgrep -P $ng_master"
ng_ka=$(run_case nginx_keepalive "$ng_port" "$ng_workers")
ng_close=$(run_case nginx_close "$ng_port" "$ng_workers" -H "Connection: close")
kill -QUIT "$ng_master" 2>/dev/null || true

echo "crash_fail_per_kill_ivy_keepalive: $ivy_ka requests"
echo "crash_fail_per_kill_nginx_keepalive: $ng_ka requests"
echo "crash_fail_per_kill_ivy_close: $ivy_close requests"
echo "crash_fail_per_kill_nginx_close: $ng_close requests"
# A ratio whose peer is missing or zero (nginx lost nothing, or did not run) is n/a, not 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f x\n", a / b; else print "n/a" }'; }
echo "crash_keepalive_ivy_vs_nginx: $(ratio "$ivy_ka" "$ng_ka")"
echo "crash_close_ivy_vs_nginx: $(ratio "$ivy_close" "$ng_close")"
