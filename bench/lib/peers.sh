# The peer servers of bench/http.sh and bench/idle.sh, sourced by both: their configurations
# and builds, written under $TMP (the caller's temporary directory), and finding a free port.
# shellcheck shell=bash

PEERS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HELLO_GREEN=$PEERS_DIR/hello_green.py # python3 hello_green.py gevent|eventlet PORT

# nginx, one worker, `return 200 "Hello, World!"`: $TMP/nginx/nginx.conf for port $1 and $2
# clients at once (default 4096). nginx closes idle keep-alive connections once fewer than a
# sixteenth of its connection slots are free: it gets an eighth more slots than clients.
nginx_conf() {
  local conns=$((${2:-4096} * 9 / 8 + 64)) files
  files=$(ulimit -Hn)
  [ "$files" = unlimited ] || [ "$files" -gt $((conns + 64)) ] && files=$((conns + 64))
  mkdir -p "$TMP/nginx"
  cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $files;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections $conns; }
http {
  access_log off;
  default_type text/plain;
  keepalive_requests 100000000; # the default (1000) would make wrk reconnect: not the test
  keepalive_timeout 600s;
  client_body_temp_path $TMP/nginx; proxy_temp_path $TMP/nginx; fastcgi_temp_path $TMP/nginx;
  uwsgi_temp_path $TMP/nginx; scgi_temp_path $TMP/nginx;
  server {
    listen 127.0.0.1:$1 reuseport backlog=4096;
    location / { return 200 "Hello, World!"; }
  }
}
EOF
}

# h2o, one thread, serving a 13-byte file (Debian's h2o has no fixed-body handler but mruby,
# which costs more per request): $TMP/h2o/h2o.conf for port $1.
h2o_conf() {
  mkdir -p "$TMP/h2o"
  printf 'Hello, World!' >"$TMP/h2o/hello.txt"
  : >"$TMP/h2o/h2o.conf"
  # As root, h2o would drop to nobody, who cannot read $TMP: it stays root.
  [ "$(id -u)" -eq 0 ] && echo "user: root" >"$TMP/h2o/h2o.conf"
  cat >>"$TMP/h2o/h2o.conf" <<EOF
num-threads: 1
listen:
  host: 127.0.0.1
  port: $1
pid-file: $TMP/h2o/h2o.pid
error-log: $TMP/h2o/error.log
hosts:
  default:
    paths:
      /:
        file.file: $TMP/h2o/hello.txt
        file.etag: OFF
EOF
}

# Builds bench/go/$1 (a hello server taking its port) into $TMP/$1 from Debian's Go packages
# (golang-go, golang-github-valyala-fasthttp-dev): no module download.
go_build() {
  (cd "$PEERS_DIR/../go/$1" && GO111MODULE=off GOPATH=/usr/share/gocode go build -o "$TMP/$1" .)
}

# The next port after $PORT that no socket uses (listening or connected: a connected socket's
# local port makes bind fail too), into PORT.
next_port() {
  PORT=$((PORT + 1))
  while ss -Htan "sport = :$PORT" | grep -q .; do PORT=$((PORT + 1)); done
}
PORT=$((20000 + RANDOM % 10000))

# Waits (10 s at most) until port $1 answers GET / with the hello body: 0, or 1.
await_hello() {
  local _
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$1/" 2>/dev/null | grep -q "Hello, World!" && return 0
    sleep 0.05
  done
  return 1
}
