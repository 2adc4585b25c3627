#!/usr/bin/env bash
# Idle keep-alive connections: the serving process's RSS per connection once CONNS connections
# (default 18,000) have each made one request and wait, idle, for the next; then every one of
# them makes a second request, and all must answer. ivy serve (http app, one worker) against
# gevent (bench/lib/hello_green.py), Go net/http and Go fasthttp (GOMAXPROCS=1, bench/go) and
# nginx (one worker), one after another in one run, each on cpu SERVER_CPU (default 0), the
# client (bench/lib/idle_client.py: one process, nonblocking sockets) on the last CPU.
#
# RSS is VmRSS of the serving processes (ivy's and nginx's workers, not their supervisor or
# master) from /proc/PID/status, read after the server answered its first request and again
# SETTLE seconds (default 3) after the last connection went idle: ivy gives a quiet
# connection's buffers back after a second, and every server gets the same wait. Kernel socket
# memory is not in RSS. Prints `name: value unit` lines; ratios compare figures of this run.
# Env: CONNS, SETTLE, SERVERS (a subset of "ivy gevent nethttp fasthttp nginx"), IVY.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/peers.sh

CONNS=${CONNS:-18000}
SETTLE=${SETTLE:-3}
IVY=${IVY:-build/apps/ivy}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-$(($(nproc) - 1))}
PY=/usr/bin/python3 # Debian's python3-gevent lives here, not in a venv
read -r -a SERVERS <<<"${SERVERS:-ivy gevent nethttp fasthttp nginx}"

[ -x "$IVY" ] || { echo "idle.sh: $IVY missing: run make first" >&2; exit 1; }
scripts/deps.sh nginx-light python3-gevent golang-go golang-github-valyala-fasthttp-dev

# Every server and the client hold CONNS descriptors and a few more: the soft limit goes up to
# the hard one, which servers and client inherit.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNS + 200)) ]; then
  echo "idle.sh: the descriptor limit ($(ulimit -n)) is below CONNS + 200: CONNS=$CONNS" \
       "needs a higher hard limit (ulimit -Hn)" >&2
  exit 1
fi

TMP=$(mktemp -d /tmp/ivy-bench-idle.XXXXXX)
SPID=""
cleanup() {
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null
  exec 3>&- 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

for s in "${SERVERS[@]}"; do
  case $s in nethttp | fasthttp) go_build "${s}_hello" ;; esac
done

# Starts server $1 on SERVER_CPU into SPID, on a fresh PORT; waits until it answers hello.
start() {
  next_port
  case $1 in
  ivy) taskset -c "$SERVER_CPU" "$IVY" serve --app http --workers 1 --listen "127.0.0.1:$PORT" \
         --keepalive-timeout 600 --quiet >"$TMP/$1.log" 2>&1 & ;;
  nginx) nginx_conf "$PORT" "$CONNS"
         taskset -c "$SERVER_CPU" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" \
           >"$TMP/$1.log" 2>&1 & ;;
  gevent) taskset -c "$SERVER_CPU" "$PY" "$HELLO_GREEN" gevent "$PORT" >"$TMP/$1.log" 2>&1 & ;;
  nethttp | fasthttp) GOMAXPROCS=1 taskset -c "$SERVER_CPU" "$TMP/${1}_hello" "$PORT" \
                        >"$TMP/$1.log" 2>&1 & ;;
  esac
  SPID=$!
  await_hello "$PORT" && return 0
  echo "idle.sh: $1 did not answer on port $PORT:" >&2
  cat "$TMP/$1.log" >&2
  exit 1
}

# The processes that serve $1: ivy's and nginx's workers, else the one we started.
server_pids() {
  local kids=""
  case $1 in ivy | nginx) kids=$(pgrep -P "$SPID" || true) ;; esac
  echo "${kids:-$SPID}"
}

rss_kib() { # the VmRSS of processes $@, summed
  local p t=0
  for p in "$@"; do t=$((t + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status"))); done
  echo "$t"
}

# Waits (120 s at most) for a line matching $1 in file $2; prints it.
await_line() {
  local _
  for _ in $(seq 1200); do
    grep -m1 "$1" "$2" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "idle.sh: the client did not say '$1':" >&2
  cat "$2" >&2
  exit 1
}

declare -A BEFORE AFTER OPENED ANSWERED
for s in "${SERVERS[@]}"; do
  start "$s"
  pids=$(server_pids "$s")
  BEFORE[$s]=$(rss_kib $pids)
  rm -f "$TMP/go" && mkfifo "$TMP/go"
  taskset -c "$CLIENT_CPU" "$PY" bench/lib/idle_client.py "$PORT" "$CONNS" <"$TMP/go" \
    >"$TMP/client.out" 2>&1 &
  cpid=$!
  exec 3>"$TMP/go"
  OPENED[$s]=$(await_line '^idle ' "$TMP/client.out" | awk '{print $2}')
  sleep "$SETTLE"
  AFTER[$s]=$(rss_kib $pids)
  echo >&3
  exec 3>&-
  ANSWERED[$s]=$(await_line '^answered ' "$TMP/client.out" | awk '{print $2}')
  wait "$cpid" || { echo "idle.sh: the client failed against $s:" >&2; cat "$TMP/client.out" >&2; }
  kill "$SPID"
  wait "$SPID" 2>/dev/null || true
  SPID=""
  [ -n "${VERBOSE:-}" ] && echo "$s: rss ${BEFORE[$s]} -> ${AFTER[$s]} KiB," \
    "${OPENED[$s]} answered once, ${ANSWERED[$s]} twice" >&2
done

per_conn() { # KiB of RSS per connection that server $1 gained
  awk -v a="${AFTER[$1]}" -v b="${BEFORE[$1]}" -v n="$CONNS" 'BEGIN { printf "%.2f", (a - b) / n }'
}
echo "idle: $CONNS keep-alive connections after one request each, servers on cpu $SERVER_CPU," \
     "client on cpu $CLIENT_CPU, VmRSS before and ${SETTLE} s after"
for s in "${SERVERS[@]}"; do
  printf '%s_idle_kib_per_conn: %s KiB\n' "$s" "$(per_conn "$s")"
done
for s in "${SERVERS[@]}"; do
  printf '%s_idle_rss: %s -> %s KiB\n' "$s" "${BEFORE[$s]}" "${AFTER[$s]}"
  printf '%s_idle_answered: %s of %s, then %s of %s\n' "$s" "${OPENED[$s]}" "$CONNS" \
    "${ANSWERED[$s]}" "$CONNS"
done
for s in "${SERVERS[@]}"; do
  [ "$s" = ivy ] || [ -z "${AFTER[ivy]:-}" ] && continue
  printf 'idle_vs_%s: %s\n' "$s" "$(awk -v a="$(per_conn ivy)" -v b="$(per_conn "$s")" \
    'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')"
done
