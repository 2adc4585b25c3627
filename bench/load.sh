#!/usr/bin/env bash
# bench/load.sh: `ivy load` against wrk, the claim of DESIGN.md §5 that our generator drives at
# least as much load as wrk from one core.
#
# nginx `return 200` with one worker runs pinned to one CPU; each generator in turn runs pinned
# to another, with the same connections and duration, alternating which goes first. Prints the
# median of RUNS runs of each figure: requests/s, the ratio, and the CPU time each generator
# spent per request (user + system, its worker processes included).
#
# Usage: bench/load.sh   (env: IVY=build/apps/ivy CONNS=50 DURATION=5 RUNS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
IVY=${IVY:-build/apps/ivy}
CONNS=${CONNS:-50}
DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
NGINX=/usr/sbin/nginx

if ! command -v wrk >/dev/null || [ ! -x "$NGINX" ]; then scripts/deps.sh wrk nginx-light; fi
if [ ! -x "$IVY" ]; then echo "bench/load.sh: $IVY missing: run make first" >&2; exit 1; fi

# Two CPUs from our affinity list: the generators share the first, nginx has the second.
cpus=()
for part in $(taskset -c -p $$ | sed 's/.*: //' | tr ',' ' '); do
  if [[ $part == *-* ]]; then cpus+=($(seq "${part%-*}" "${part#*-}")); else cpus+=("$part"); fi
done
GEN_CPU=${cpus[0]}
NGX_CPU=${cpus[1]:-${cpus[0]}}
[ ${#cpus[@]} -ge 2 ] || echo "bench/load.sh: one CPU only: nginx shares it with the generator" >&2

tmp=$(mktemp -d /tmp/ivy-bench-load.XXXXXX)
ngx_pid=
cleanup() { [ -n "$ngx_pid" ] && kill "$ngx_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=$((20000 + RANDOM % 40000))
while port_busy "$port"; do port=$((20000 + RANDOM % 40000)); done

cat >"$tmp/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000000;
  client_body_temp_path $tmp; proxy_temp_path $tmp; fastcgi_temp_path $tmp;
  uwsgi_temp_path $tmp; scgi_temp_path $tmp;
  server { listen 127.0.0.1:$port; location / { return 200 "hello\n"; } }
}
EOF
taskset -c "$NGX_CPU" "$NGINX" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log" &
ngx_pid=$!
for _ in $(seq 100); do port_busy "$port" && break; sleep 0.05; done
port_busy "$port" || { echo "bench/load.sh: nginx did not start:" >&2; cat "$tmp/error.log" >&2; exit 1; }
url="http://127.0.0.1:$port/"

# Runs a generator pinned to GEN_CPU; prints "requests rps cpu_seconds".
TIMEFORMAT='%U %S'
run_ivy() {
  { time taskset -c "$GEN_CPU" "$IVY" load "127.0.0.1:$port/" -c "$CONNS" -d "$DURATION" -t 1 \
      --json >"$tmp/ivy.json" 2>"$tmp/ivy.err"; } 2>"$tmp/ivy.time"
  local n rps
  n=$(grep -o '"requests": [0-9]*' "$tmp/ivy.json" | grep -o '[0-9]*$')
  rps=$(grep -o '"requests_per_sec": [0-9.]*' "$tmp/ivy.json" | grep -o '[0-9.]*$')
  echo "$n $rps $(awk '{print $1 + $2}' "$tmp/ivy.time")"
}
run_wrk() {
  { time taskset -c "$GEN_CPU" wrk -t 1 -c "$CONNS" -d "${DURATION}s" "$url" \
      >"$tmp/wrk.out" 2>&1; } 2>"$tmp/wrk.time"
  local n rps
  n=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk.out")
  echo "$n $rps $(awk '{print $1 + $2}' "$tmp/wrk.time")"
}

ivy_rps=() wrk_rps=() ivy_us=() wrk_us=() ratio=()
for i in $(seq "$RUNS"); do
  if ((i % 2)); then a=$(run_ivy); b=$(run_wrk); else b=$(run_wrk); a=$(run_ivy); fi
  read -r an ar ac <<<"$a"
  read -r bn br bc <<<"$b"
  ivy_rps+=("$ar") wrk_rps+=("$br")
  ivy_us+=("$(awk -v c="$ac" -v n="$an" 'BEGIN {printf "%.3f", c * 1e6 / n}')")
  wrk_us+=("$(awk -v c="$bc" -v n="$bn" 'BEGIN {printf "%.3f", c * 1e6 / n}')")
  # n/a when a generator reported nothing (the median then counts it as missing)
  ratio+=("$(awk -v a="$ar" -v b="$br" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.3f", a / b; else printf "n/a" }')")
  echo "run $i: ivy load $ar req/s (${ivy_us[-1]} us/req), wrk $br req/s (${wrk_us[-1]} us/req)" >&2
done
median() { # of the numeric values; n/a when there are none
  printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g |
    awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]; else print "n/a"}'
}

echo "config: nginx return 200, 1 worker on CPU $NGX_CPU; generators on CPU $GEN_CPU;" \
  "$CONNS connections, ${DURATION}s, median of $RUNS"
echo "ivy_load_rps: $(median "${ivy_rps[@]}") req/s"
echo "wrk_rps: $(median "${wrk_rps[@]}") req/s"
echo "load_vs_wrk: $(median "${ratio[@]}") x"
echo "ivy_load_cpu_us_per_req: $(median "${ivy_us[@]}") us"
echo "wrk_cpu_us_per_req: $(median "${wrk_us[@]}") us"
