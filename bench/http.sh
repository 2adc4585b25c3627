#!/usr/bin/env bash
# HTTP hello world: ivy serve (http app, one worker) against the bare io_uring loop
# (build/bench/raw_http_server, the limit of ivy's design), nginx (one worker, `return 200`),
# h2o (one thread, a 13-byte file: Debian's h2o has no fixed-body handler but mruby, which
# costs more), Go fasthttp (GOMAXPROCS=1, bench/go/fasthttp_hello) and the same hello server
# on gevent and on eventlet, all with the same client in one run: wrk -t1 -c64, keep-alive,
# then 16-deep pipelined (a wrk Lua script); then ivy's JSON route (GET /users/42 through the
# router, keep-alive) against its own hello route. Servers run on one CPU,
# wrk on another; the CPU time of each server's serving processes (ivy's and nginx's workers,
# not their supervisor or master) is read from /proc/PID/stat before and after a run for
# CPU-microseconds per request, and their time spent runnable but not running (schedstat) says
# how contended the machine was: on a shared machine, compare figures from quiet runs.
#
# Env: DURATION (seconds per run, default 10), ROUNDS (default 1; with more, every figure is
# the median over rounds, servers interleaved within each), IVY (default build/apps/ivy),
# SERVER_CPU / CLIENT_CPU (default 0 and the last CPU), VERBOSE (each run's figures on stderr),
# SERVERS (a subset of "ivy raw nginx h2o fasthttp gevent eventlet", for quicker comparisons).
# Prints `name: value unit` lines; ratios compare figures of this run only.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/peers.sh

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
scripts/deps.sh wrk nginx-light h2o golang-go golang-github-valyala-fasthttp-dev python3-gevent \
  python3-eventlet

TMP=$(mktemp -d /tmp/ivy-bench-http.XXXXXX)
declare -A SPID SPORT # per server name: the process we started, its port
cleanup() {
  local p
  for p in "${SPID[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# ---- wrk's pipelining script (the servers: bench/lib/peers.sh) ---------------------------
cat >"$TMP/pipeline.lua" <<'EOF'
-- 16 requests per write; wrk counts each response.
init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil, "/") end
  req = table.concat(r)
end
request = function() return req end
EOF

# Starts server $1 as $2 on CPUs $3 (ivy: $4 workers); waits until it answers hello.
start() {
  local name=$2
  next_port
  case $1 in
  ivy) taskset -c "$3" "$IVY" serve --app http --workers "$4" --listen "127.0.0.1:$PORT" \
         --quiet >"$TMP/$name.log" 2>&1 & ;;
  raw) taskset -c "$3" "$RAW" "$PORT" >"$TMP/$name.log" 2>&1 & ;;
  nginx) nginx_conf "$PORT"
         taskset -c "$3" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/$name.log" 2>&1 & ;;
  h2o) h2o_conf "$PORT"
       taskset -c "$3" h2o -c "$TMP/h2o/h2o.conf" >"$TMP/$name.log" 2>&1 & ;;
  fasthttp) GOMAXPROCS=1 taskset -c "$3" "$TMP/fasthttp_hello" "$PORT" >"$TMP/$name.log" 2>&1 & ;;
  gevent | eventlet) taskset -c "$3" "$PY" "$HELLO_GREEN" "$1" "$PORT" >"$TMP/$name.log" 2>&1 & ;;
  esac
  SPID[$name]=$!
  SPORT[$name]=$PORT
  await_hello "$PORT" && return 0
  echo "http.sh: $name did not answer on port $PORT:" >&2
  cat "$TMP/$name.log" >&2
  exit 1
}

# The processes that serve server $1: the workers of ivy and nginx (their supervisor and
# master only watch), else the process we started (h2o's child only annotates crashes).
server_pids() {
  local kids=""
  case $1 in ivy* | nginx) kids=$(pgrep -P "${SPID[$1]}" || true) ;; esac
  echo "${kids:-${SPID[$1]}}"
}

# "cpu_ticks runnable_wait_ns" used so far by the processes $@, every thread of them.
usage() {
  local p t=0 w=0 f
  for p in "$@"; do
    # utime and stime follow the ")" that ends the command name, which may hold spaces.
    [ -r "/proc/$p/stat" ] && t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
    for f in /proc/"$p"/task/*/schedstat; do
      [ -r "$f" ] && w=$((w + $(awk '{print $2}' "$f")))
    done
  done
  echo "$t $w"
}

# Runs wrk against server $1 in mode $2 (ka|pipe|json: keep-alive on /users/42); prints
# "rps cpu_us_per_req wrk_cpu_pct runnable_wait_pct".
measure() {
  local script=() out u0 u1 rps reqs pids url="http://127.0.0.1:${SPORT[$1]}/"
  [ "$2" = pipe ] && script=(-s "$TMP/pipeline.lua")
  [ "$2" = json ] && url+="users/42"
  pids=$(server_pids "$1")
  taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d1s "${script[@]}" "$url" >/dev/null
  u0=$(usage $pids)
  out=$(taskset -c "$CLIENT_CPU" /usr/bin/time -f "wrkcpu %P" \
        wrk -t1 -c64 -d"${DURATION}s" "${script[@]}" "$url" 2>&1)
  u1=$(usage $pids)
  if grep -qE "Non-2xx|Socket errors" <<<"$out"; then
    echo "http.sh: wrk reported errors against $1:" >&2
    grep -E "Non-2xx|Socket errors" <<<"$out" >&2
  fi
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v r="$rps" -v n="$reqs" -v u0="$u0" -v u1="$u1" -v hz="$HZ" -v d="$DURATION" \
      -v w="$(awk '/^wrkcpu/ {print $2+0}' <<<"$out")" 'BEGIN {
        split(u0, a, " "); split(u1, b, " ")
        printf "%.0f %.2f %d %.1f\n", r, (n > 0 ? (b[1] - a[1]) * 1e6 / hz / n : 0), w,
               (b[2] - a[2]) / 1e9 / d * 100 }'
}

median() { sort -g | awk '{v[NR] = $1} END {if (!NR) print "n/a"; else print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# Every server runs from the start (idle ones cost nothing); rounds interleave them, so that a
# change in the machine's load touches all of them alike.
read -r -a SERVERS <<<"${SERVERS:-ivy raw nginx h2o fasthttp gevent eventlet}"
for s in "${SERVERS[@]}"; do [ "$s" = fasthttp ] && go_build fasthttp_hello; done
for s in "${SERVERS[@]}"; do start "$s" "$s" "$SERVER_CPU" 1; done
start ivy ivy2 "0,1" 2 # two workers, on CPUs 0 and 1 whatever the client's
declare -A R # R[name.mode]: one line per round, as measure prints it
for round in $(seq "$ROUNDS"); do
  for s in "${SERVERS[@]}"; do
    for mode in ka pipe; do
      line=$(measure "$s" "$mode")
      R[$s.$mode]+="$line"$'\n'
      [ -n "${VERBOSE:-}" ] && echo "round $round $s $mode: rps cpu_us wrk_cpu% runq_wait%: $line" >&2
    done
  done
  R[ivy2.ka]+="$(measure ivy2 ka)"$'\n'
  for s in "${SERVERS[@]}"; do [ "$s" = ivy ] && R[ivy.json]+="$(measure ivy json)"$'\n'; done
done

col() { printf '%s' "${R[$1]:-}" | awk -v c="$2" 'NF {print $c}' | median; }
# A ratio whose peer is missing (not installed, failed to start) or zero is n/a, never 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.3f", a / b; else printf "n/a" }'; }

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
  for s in "${SERVERS[@]}"; do # ivy against each peer: above 1 is more req/s, more CPU
    [ "$s" = ivy ] && continue
    printf '%srps_vs_%s: %s\n' "$p" "$s" "$(ratio "$ivy" "$(col "$s.$mode" 1)")"
  done
  for s in "${SERVERS[@]}"; do
    [ "$s" = ivy ] && continue
    printf '%scpu_vs_%s: %s\n' "$p" "$s" "$(ratio "$(col "ivy.$mode" 2)" "$(col "$s.$mode" 2)")"
  done
  printf '%swrk_cpu_with_ivy: %s %%\n' "$p" "$(col "ivy.$mode" 3)"
  for s in "${SERVERS[@]}"; do # how contended the machine was: time runnable, not running
    printf '%s%s_runq_wait: %s %%\n' "$p" "$s" "$(col "$s.$mode" 4)"
  done
done
if [ -n "${R[ivy.json]:-}" ]; then # GET /users/42: a path parameter, a JSON body
  printf 'json_ivy_rps: %s req/s\n' "$(col ivy.json 1)"
  printf 'json_ivy_cpu_us_per_req: %s us\n' "$(col ivy.json 2)"
  printf 'json_cpu_vs_hello: %s\n' "$(ratio "$(col ivy.json 2)" "$(col ivy.ka 2)")"
  printf 'json_ivy_runq_wait: %s %%\n' "$(col ivy.json 4)"
fi
printf 'ivy_2w_rps: %s req/s\n' "$(col ivy2.ka 1)"
printf 'scaling_2w: %s\n' "$(ratio "$(col ivy2.ka 1)" "$(col ivy.ka 1)")"
wrk2=$(col ivy2.ka 3)
if [ "$NCPU" -lt 4 ] || [ "${wrk2%.*}" -ge 90 ]; then
  echo "scaling_2w_note: client-bound: one wrk thread at ${wrk2}% of a CPU on $NCPU CPUs (it shares" \
       "cpu $CLIENT_CPU with a worker); the target (>= 1.8) needs a client with CPUs to spare"
fi
