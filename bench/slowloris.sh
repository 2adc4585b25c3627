#!/usr/bin/env bash
# Slowloris against ivy serve (http app, one worker): SLOW connections (default 10,000) trickle
# request heads one byte per second (bench/lib/slow_client.c), never finishing them, while wrk
# (-c64, keep-alive) measures normal load; the same wrk run without them is the baseline, in the
# same run. The server runs with --request-timeout REQ_TIMEOUT (default 5 s): every slow
# connection must be answered 408 and closed by then, and normal load keep >= 90% of its req/s.
# Server on SERVER_CPU (0), clients on the last CPU. Prints `name: value unit` lines.
# The trickler and wrk share the client CPU: on 2 CPUs that, not the server, limits the ratio
# (the trickler is in C to take as little of it as it can).
# Env: SLOW, DURATION (seconds of each wrk run, default 10), REQ_TIMEOUT, IVY.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/peers.sh

SLOW=${SLOW:-10000}
DURATION=${DURATION:-10}
REQ_TIMEOUT=${REQ_TIMEOUT:-5}
IVY=${IVY:-build/apps/ivy}
SLOW_CLIENT=build/bench/lib/slow_client
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-$(($(nproc) - 1))}
for f in "$IVY" "$SLOW_CLIENT"; do
  [ -x "$f" ] || { echo "slowloris.sh: $f missing: run make first" >&2; exit 1; }
done
scripts/deps.sh wrk
ulimit -n "$(ulimit -Hn)"

TMP=$(mktemp -d /tmp/ivy-bench-slow.XXXXXX)
SPID="" CPID=""
cleanup() {
  for p in $SPID $CPID; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

next_port
taskset -c "$SERVER_CPU" "$IVY" serve --app http --workers 1 --listen "127.0.0.1:$PORT" \
  --request-timeout "$REQ_TIMEOUT" --quiet >"$TMP/ivy.log" 2>&1 &
SPID=$!
for _ in $(seq 100); do curl -s "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.05; done

rps() { # wrk's Requests/sec for one run
  taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$PORT/" |
    awk '/Requests\/sec/ {print $2}'
}
base=$(rps)
# The slow clients run for the wrk run and the request timeout after it, and report at the end.
taskset -c "$CLIENT_CPU" "$SLOW_CLIENT" "$PORT" "$SLOW" \
  "$((DURATION + REQ_TIMEOUT + 3))" 1 >"$TMP/slow.out" &
CPID=$!
sleep 2 # every slow connection open and trickling
loaded=$(rps)
wait "$CPID"
CPID=""
read -r _ opened _ closed _ got408 _ other _ open <"$TMP/slow.out"

echo "slowloris_base_rps: $base req/s"
echo "slowloris_loaded_rps: $loaded req/s (with $opened slow connections)"
awk -v a="$loaded" -v b="$base" 'BEGIN { r = "n/a"; if (b > 0) r = sprintf("%.3f", a / b)
  print "slowloris_rps_kept: " r }'
echo "slowloris_closed: $closed of $opened ($got408 answered 408, $other otherwise, $open still open)"
