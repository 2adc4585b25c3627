#!/usr/bin/env bash
# HTTPS, one worker each, the same ECDSA P-256 certificate (made here with openssl): ivy serve
# --app http --tls-cert/--tls-key against nginx (ssl, one worker, `return 200`, a shared
# session cache, TLS 1.3 enabled) and h2o (one thread, a static file), all speaking TLS 1.3 with
# the same clients in one run:
#   keep-alive   wrk -t1 -c64: requests/s and the server's CPU-microseconds per request;
#   full         a new connection and a full handshake per request (ivy load --no-resume
#                -H 'Connection: close', TLS 1.3, X25519): handshakes/s, CPU-us per handshake;
#   resumed      the same, resuming the session the last connection got (TLS 1.3 tickets).
# Servers run on one CPU, clients on another; the serving processes' CPU time (ivy's worker,
# nginx's worker, h2o) is read from /proc/PID/stat around each run.
#
# Env: DURATION (seconds per run, default 5), ROUNDS (default 3: medians, servers interleaved),
# IVY (default build/apps/ivy), SERVER_CPU / CLIENT_CPU (default 0 and the last CPU), VERBOSE,
# SERVERS (a subset of "ivy nginx h2o"). On a shared machine run it as
# `flock /tmp/ivy-bench.lock bash bench/tls.sh`. Prints `name: value unit` lines; ratios compare
# figures of this run only.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
IVY=${IVY:-build/apps/ivy}
NCPU=$(nproc)
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-$((NCPU - 1))}
HZ=$(getconf CLK_TCK)

[ -x "$IVY" ] || { echo "tls.sh: $IVY missing: run make first" >&2; exit 1; }
scripts/deps.sh wrk nginx-light h2o openssl

TMP=$(mktemp -d /tmp/ivy-bench-tls.XXXXXX)
declare -A SPID SPORT
cleanup() {
  local p
  for p in "${SPID[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# ---- the certificate: a CA and a leaf for localhost, ECDSA P-256 ----------------------------
(
  cd "$TMP"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -subj /CN=bench-ca -days 2
  openssl req -new "${ec[@]}" -keyout key.pem -out leaf.csr -subj /CN=localhost
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >leaf.ext
  openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile leaf.ext -out cert.pem
) >/dev/null 2>&1 || { echo "tls.sh: openssl could not make the certificate" >&2; exit 1; }
CERT=$TMP/cert.pem KEY=$TMP/key.pem

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
  keepalive_requests 100000000;
  client_body_temp_path $TMP/nginx; proxy_temp_path $TMP/nginx; fastcgi_temp_path $TMP/nginx;
  uwsgi_temp_path $TMP/nginx; scgi_temp_path $TMP/nginx;
  ssl_session_cache shared:SSL:10m;
  ssl_protocols TLSv1.2 TLSv1.3; # 1.22's default stops at TLSv1.2: compare like with like
  server {
    listen 127.0.0.1:$1 ssl reuseport;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    location / { return 200 "Hello, World!"; }
  }
}
EOF
}

h2o_conf() { # port
  mkdir -p "$TMP/h2o/www"
  printf 'Hello, World!' >"$TMP/h2o/www/index.html"
  cat >"$TMP/h2o/h2o.conf" <<EOF
user: $(id -un)
num-threads: 1
error-log: $TMP/h2o/error.log
listen:
  host: 127.0.0.1
  port: $1
  ssl:
    certificate-file: $CERT
    key-file: $KEY
    ocsp-update-interval: 0
hosts:
  "default":
    paths:
      "/":
        file.dir: $TMP/h2o/www
EOF
}

PORT=$((10000 + RANDOM % 10000)) # below the ephemeral range: no outgoing socket holds it
start() { # name
  PORT=$((PORT + 1))
  while ss -Htan "sport = :$PORT" | grep -q .; do PORT=$((PORT + 1)); done
  case $1 in
  ivy) taskset -c "$SERVER_CPU" "$IVY" serve --app http --workers 1 --listen "127.0.0.1:$PORT" \
         --tls-cert "$CERT" --tls-key "$KEY" >"$TMP/ivy.log" 2>&1 & ;;
  nginx) nginx_conf "$PORT"
         taskset -c "$SERVER_CPU" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx.log" 2>&1 & ;;
  h2o) h2o_conf "$PORT"
       taskset -c "$SERVER_CPU" h2o -c "$TMP/h2o/h2o.conf" >"$TMP/h2o.log" 2>&1 & ;;
  esac
  SPID[$1]=$!
  SPORT[$1]=$PORT
  for _ in $(seq 200); do
    curl -sf --cacert "$TMP/ca.pem" "https://localhost:$PORT/" 2>/dev/null | grep -q "Hello, World!" && return 0
    sleep 0.05
  done
  echo "tls.sh: $1 did not answer on port $PORT:" >&2
  cat "$TMP/$1.log" >&2
  exit 1
}

# The processes that serve: ivy's and nginx's workers (their supervisor and master only
# watch); h2o's whole process tree (it serves in the process we started).
server_pids() { # name
  local kids
  kids=$(pgrep -P "${SPID[$1]}" || true)
  if [ "$1" = h2o ]; then echo "${SPID[$1]} $kids"; else echo "${kids:-${SPID[$1]}}"; fi
}

ticks() {
  local p t=0
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}

# Runs mode $2 (ka|full|resumed) against server $1; prints "per_second cpu_us_per_op".
measure() {
  local pids t0 t1 out rate n url="https://localhost:${SPORT[$1]}/"
  pids=$(server_pids "$1")
  t0=$(ticks $pids)
  if [ "$2" = ka ]; then
    out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DURATION}s" "$url" 2>&1)
    t1=$(ticks $pids)
    grep -qE "Non-2xx|Socket errors" <<<"$out" && { echo "tls.sh: wrk errors against $1:" >&2; grep -E "Non-2xx|Socket errors" <<<"$out" >&2; }
    rate=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
  else
    local extra=()
    [ "$2" = full ] && extra=(--no-resume)
    out=$(taskset -c "$CLIENT_CPU" "$IVY" load "$url" -c 16 -t 1 -d "$DURATION" -k \
            -H 'Connection: close' "${extra[@]}" --json 2>&1)
    t1=$(ticks $pids)
    rate=$(grep -o '"handshakes_per_sec": [0-9.]*' <<<"$out" | awk '{print $2}')
    n=$(grep -o '"tls": {"handshakes": [0-9]*' <<<"$out" | awk '{print $3}')
    local resumed
    resumed=$(grep -o '"resumed": [0-9]*' <<<"$out" | awk '{print $2}')
    if [ "$2" = resumed ] && [ "${n:-0}" -gt 0 ] && [ $((resumed * 10)) -lt $((n * 9)) ]; then
      echo "tls.sh: only $resumed of $n handshakes with $1 resumed" >&2
    fi
  fi
  awk -v r="${rate:-0}" -v n="${n:-0}" -v t0="$t0" -v t1="$t1" -v hz="$HZ" \
      'BEGIN { printf "%.0f %.2f\n", r, (n > 0 ? (t1 - t0) * 1e6 / hz / n : 0) }'
}

median() { sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

read -r -a SERVERS <<<"${SERVERS:-ivy nginx h2o}"
for s in "${SERVERS[@]}"; do start "$s"; done
declare -A R
for round in $(seq "$ROUNDS"); do
  for s in "${SERVERS[@]}"; do
    for mode in ka full resumed; do
      line=$(measure "$s" "$mode")
      R[$s.$mode]+="$line"$'\n'
      [ -n "${VERBOSE:-}" ] && echo "round $round $s $mode: per_s cpu_us: $line" >&2
    done
  done
done

col() { printf '%s' "${R[$1]:-}" | awk -v c="$2" 'NF {print $c}' | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }

grep -o 'records: .*' "$TMP/ivy.log" 2>/dev/null | sed 's/^records: /ivy_tls_records: /' || true
echo "tls: ECDSA P-256, servers on cpu $SERVER_CPU, clients on cpu $CLIENT_CPU, ${DURATION}s runs, $ROUNDS round(s), medians"
for s in "${SERVERS[@]}"; do
  printf '%s_keepalive_rps: %s req/s\n' "$s" "$(col "$s.ka" 1)"
  printf '%s_keepalive_cpu_us_per_req: %s us\n' "$s" "$(col "$s.ka" 2)"
  printf '%s_full_handshakes: %s /s\n' "$s" "$(col "$s.full" 1)"
  printf '%s_full_cpu_us_per_handshake: %s us\n' "$s" "$(col "$s.full" 2)"
  printf '%s_resumed_handshakes: %s /s\n' "$s" "$(col "$s.resumed" 1)"
  printf '%s_resumed_cpu_us_per_handshake: %s us\n' "$s" "$(col "$s.resumed" 2)"
done
for peer in nginx h2o; do
  [[ " ${SERVERS[*]} " == *" $peer "* && " ${SERVERS[*]} " == *" ivy "* ]] || continue
  printf 'keepalive_rps_vs_%s: %s\n' "$peer" "$(ratio "$(col ivy.ka 1)" "$(col "$peer.ka" 1)")"
  printf 'keepalive_cpu_vs_%s: %s\n' "$peer" "$(ratio "$(col ivy.ka 2)" "$(col "$peer.ka" 2)")"
  printf 'full_handshakes_vs_%s: %s\n' "$peer" "$(ratio "$(col ivy.full 1)" "$(col "$peer.full" 1)")"
  printf 'full_cpu_vs_%s: %s\n' "$peer" "$(ratio "$(col ivy.full 2)" "$(col "$peer.full" 2)")"
  printf 'resumed_handshakes_vs_%s: %s\n' "$peer" "$(ratio "$(col ivy.resumed 1)" "$(col "$peer.resumed" 1)")"
done
