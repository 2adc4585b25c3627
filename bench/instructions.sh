#!/usr/bin/env bash
# User-space instructions per keep-alive request: ivy serve's hello route (through the public
# handler API and the router, one worker) against the bare io_uring loop
# (build/bench/raw_http_server), each under valgrind's callgrind with wrk -t1 -c64 on another CPU.
# Unlike CPU time, an instruction count does not move with the machine's load, so it shows what
# a change to the request path costs to within a few instructions, where bench/http.sh's CPU
# figures wander by a few percent. The kernel's part of a request (most of its CPU on loopback)
# is not counted: compare that with bench/http.sh.
#
# Requests are counted where the instructions are, in the same profile: calls to ivy's hello
# handler, and to the bare loop's receive handler (one per request, keep-alive).
#
# Env: DURATION (seconds measured, default 4, after a 2 s warm-up), IVY (default
# build/apps/ivy), TOP (default 0: the N functions costing most per ivy request, on stderr).
# Prints `name: value unit` lines.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/peers.sh

DURATION=${DURATION:-4}
IVY=${IVY:-build/apps/ivy}
RAW=build/bench/raw_http_server
CLIENT_CPU=$(($(nproc) - 1))
for f in "$IVY" "$RAW"; do
  [ -x "$f" ] || { echo "instructions.sh: $f missing: run make first" >&2; exit 1; }
done
scripts/deps.sh wrk valgrind python3

TMP=$(mktemp -d /tmp/ivy-bench-instr.XXXXXX)
VPID=""
cleanup() {
  [ -n "$VPID" ] && kill "$VPID" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# Sums the calls to function $2 in callgrind profile $1; prints "calls instructions".
calls_and_total() {
  python3 - "$1" "$2" <<'EOF'
import re, sys
names, calls, pending, total = {}, 0, False, 0
for line in open(sys.argv[1]):
    m = re.match(r'(c?fn)=\((\d+)\)(?: (\S+))?', line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3)
        if m.group(1) == 'cfn':
            pending = names.get(m.group(2)) == sys.argv[2]
        continue
    if line.startswith('calls=') and pending:
        calls += int(line[6:].split()[0])
        pending = False
    elif line.startswith(('summary:', 'totals:')):
        total = int(line.split()[1])
print(calls, total)
EOF
}

# Profiles server "$@", which serves on $PORT; $PROC: the process to profile ("child": ivy's
# worker, else the one started). Sets PROFILE.
profile() {
  valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.%p" "$@" >"$TMP/log" 2>&1 &
  VPID=$!
  await_hello "$PORT" || { echo "instructions.sh: $1 did not answer:" >&2; cat "$TMP/log" >&2; exit 1; }
  local pid=$VPID
  [ "$PROC" = child ] && pid=$(pgrep -P "$VPID" | head -1)
  taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d2s "http://127.0.0.1:$PORT/" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$PORT/" >/dev/null
  kill "$VPID"
  wait "$VPID" 2>/dev/null || true
  VPID=""
  PROFILE=$TMP/cg.$pid
}

next_port
PROC=child profile "$IVY" serve --app http --workers 1 --listen "127.0.0.1:$PORT" --quiet
read -r ivy_calls ivy_total < <(calls_and_total "$PROFILE" hello)
ivy_profile=$PROFILE
next_port
PROC=self profile "$RAW" "$PORT"
read -r raw_calls raw_total < <(calls_and_total "$PROFILE" on_recv)

per() { awk -v t="$1" -v c="$2" 'BEGIN { if (c > 0) printf "%.0f", t / c; else printf "n/a" }'; }
ivy=$(per "$ivy_total" "$ivy_calls")
raw=$(per "$raw_total" "$raw_calls")
echo "instructions: callgrind, wrk -t1 -c64 -d${DURATION}s after a 2 s warm-up, one worker"
echo "ivy_requests_profiled: $ivy_calls requests"
echo "ivy_instr_per_req: $ivy instr"
echo "raw_requests_profiled: $raw_calls requests"
echo "raw_instr_per_req: $raw instr"
awk -v a="$ivy" -v b="$raw" 'BEGIN { if (b > 0) printf "instr_vs_raw: %.2f\n", a / b }'
if [ "${TOP:-0}" -gt 0 ]; then
  echo "the functions costing most per ivy request (instructions):" >&2
  callgrind_annotate "$ivy_profile" 2>/dev/null | awk -v c="$ivy_calls" -v n="$TOP" '
    /^-+$/ { dashes++; next }
    dashes == 6 && $1 ~ /^[0-9,]+$/ && shown < n {
      x = $1; gsub(",", "", x); printf "  %7.1f %s\n", x / c, $NF ~ /^\[/ ? $(NF - 1) : $NF; shown++ }' >&2
fi
