#!/usr/bin/env bash
# ivy as a library, the way a user gets it: a Release build installed into a fresh prefix,
# then every standalone example built out of tree against that prefix with pkg-config (ivy:
# libivy.so; ivy-static: libivy.a; --static with -static: a fully static program) and with
# find_package(ivy) (ivy::ivy, ivy::ivy_static), and against the source tree with
# add_subdirectory(ivy) (its defaults: libivy.a alone). Each program runs, is talked to and is
# stopped.   Usage: test_install.sh SOURCE-DIR WORK-DIR VERSION ABI-VERSION
# WORK-DIR keeps the builds between runs (only what changed is rebuilt); WORK-DIR/prefix is
# left installed for test_systemd_units.
set -euo pipefail
src=$1 work=$2 version=$3 abi=$4
cc=${CC:-cc}
jobs=$(nproc)

# Each standalone example and the function that checks it: adding one is one line.
examples=(
    "echo_server check_echo"
    "hello_http check_hello_http"
    "hello_greenlet check_hello_greenlet"
    "json_api check_json_api"
    "kv_server check_kv_server"
)

fail() { echo "test_install: FAIL: $*" >&2; exit 1; }
step() { echo "test_install: $*"; }
prefix=$work/prefix out=$work/out
rm -rf "$prefix" "$out"
mkdir -p "$out"

step "Release build into $work/build, installed into $prefix"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DIVY_BUILD_TESTS=OFF \
    -DIVY_BUILD_BENCHES=OFF -DIVY_BUILD_EXAMPLES=OFF >"$out/configure.log" ||
    { cat "$out/configure.log"; fail "configure"; }
cmake --build "$work/build" -j "$jobs" >"$out/build.log" || { cat "$out/build.log"; fail "build"; }
cmake --install "$work/build" --prefix "$prefix" >"$out/install.log"

pc=$(find "$prefix" -name ivy.pc)
[ -n "$pc" ] || fail "no ivy.pc installed"
libdir=$(dirname "$(dirname "$pc")")
for f in "$libdir/libivy.a" "$libdir/libivy.so" "$libdir/libivy.so.$abi" \
    "$libdir/libivy.so.$version" "$libdir/pkgconfig/ivy-static.pc" \
    "$libdir/cmake/ivy/ivyConfig.cmake" "$libdir/cmake/ivy/ivyConfigVersion.cmake" \
    "$prefix/include/ivy/version.h" "$prefix/bin/ivy" \
    "$prefix/share/doc/ivy/examples/systemd/ivy.socket" \
    "$prefix/share/doc/ivy/examples/systemd/ivy.service"; do
    [ -e "$f" ] || fail "$f not installed"
done
for h in "$src"/include/ivy/*.h; do
    [ -f "$prefix/include/ivy/${h##*/}" ] || fail "header ${h##*/} not installed"
done
for green in $(find "$work/build" -maxdepth 3 -name 'libivy_green.so' -printf '%f\n'); do
    [ -e "$libdir/$green" ] || fail "$green built but not installed"
done
[ "$("$prefix/bin/ivy" --version)" = "ivy $version" ] || fail "ivy --version"
# jemalloc is the malloc of ivy's own programs, never forced on the library's users.
readelf -d "$prefix/bin/ivy" | grep -q 'NEEDED.*libjemalloc' || fail "bin/ivy lacks jemalloc"
! readelf -d "$libdir/libivy.so" | grep -q 'NEEDED.*libjemalloc' || fail "libivy.so needs jemalloc"

# Runs "$@" (a server started on port 0), reads the port from its first line into $port.
start_server() {
    rm -f "$out/fifo"
    mkfifo "$out/fifo"
    "$@" >"$out/fifo" 2>"$out/server.err" &
    server=$!
    exec {server_out}<"$out/fifo"
    local line
    read -r -t 10 -u "$server_out" line || fail "$1 printed no first line: $(cat "$out/server.err")"
    [[ $line =~ 127\.0\.0\.1:([0-9]+) ]] || fail "$1 printed '$line', no address"
    port=${BASH_REMATCH[1]}
}
stop_server() {
    kill -0 "$server" 2>/dev/null || fail "the server died: $(cat "$out/server.err")"
    kill -TERM "$server"
    wait "$server" || true
    exec {server_out}<&-
}

head -c 65536 /dev/urandom >"$out/payload"
check_echo() {
    start_server "$1" 0
    local sock
    exec {sock}<>"/dev/tcp/127.0.0.1/$port"
    cat "$out/payload" >&"$sock" &
    local writer=$!
    timeout 10 head -c 65536 <&"$sock" >"$out/echoed" || true
    wait "$writer"
    exec {sock}>&-
    cmp -s "$out/payload" "$out/echoed" ||
        fail "$1 echoed $(stat -c %s "$out/echoed") bytes, not the 65536 sent"
    stop_server
}
check_hello_http() {
    start_server "$1" 0
    local body
    body=$(curl -s --max-time 10 "http://127.0.0.1:$port/") || fail "$1: curl failed"
    [ "$body" = "Hello, World!" ] || fail "$1 answered '$body'"
    stop_server
}
check_hello_greenlet() {
    local got
    got=$(timeout 10 "$1") || fail "$1 exited with $?"
    [ "$got" = $'hello world\n42' ] || fail "$1 printed '$got'"
}

# The cluster examples take a port (every worker binds the same one) and a worker count.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
check_json_api() {
    start_server "$1" "$(free_port)" 1
    local body
    for _ in $(seq 50); do
        body=$(curl -s --max-time 10 "http://127.0.0.1:$port/users/7") && break
        sleep 0.1
    done
    [ "$body" = '{"id":7,"name":"user-7"}' ] || fail "$1 answered '$body'"
    body=$(curl -s --max-time 10 -d '{"name":"ada"}' "http://127.0.0.1:$port/users")
    [ "$body" = '{"id":1,"name":"ada","worker":0}' ] || fail "$1 answered POST with '$body'"
    stop_server
}
check_kv_server() {
    start_server "$1" "$(free_port)" 1
    local got sock
    for _ in $(seq 50); do (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    exec {sock}<>"/dev/tcp/127.0.0.1/$port"
    printf 'SET k v\nGET k\n' >&"$sock"
    got=$(timeout 10 head -n 2 <&"$sock") || true
    exec {sock}>&-
    [ "$got" = $'OK\nVALUE v' ] || fail "$1 answered '$got'"
    stop_server
}

# Checks every example built as $dir/$name$suffix; with need, the dynamic libivy it must or
# must not load.
check_all() {
    local dir=$1 suffix=$2 needs=$3 name check
    for e in "${examples[@]}"; do
        read -r name check <<<"$e"
        local bin=$dir/$name$suffix
        local linked
        linked=$(readelf -d "$bin" | grep -c "NEEDED.*libivy\.so\.$abi" || true)
        case $needs in
        shared) [ "$linked" = 1 ] || fail "$bin does not load libivy.so.$abi" ;;
        static) [ "$linked" = 0 ] || fail "$bin loads libivy.so" ;;
        none) readelf -d "$bin" | grep -q "no dynamic section" || fail "$bin is not static" ;;
        esac
        ! readelf -d "$bin" | grep -q 'NEEDED.*libjemalloc' || fail "$bin got jemalloc from ivy"
        "$check" "$bin"
    done
    step "$needs: ${#examples[@]} examples in $dir$( [ -z "$suffix" ] || echo " ($suffix)") pass"
}

export PKG_CONFIG_PATH=$libdir/pkgconfig
[ "$(pkg-config --modversion ivy)" = "$version" ] || fail "pkg-config --modversion ivy"
static_libs=$(pkg-config --static --libs ivy)
[[ " $static_libs " == *" -livy "*" -luring "* && " $static_libs " == *" -pthread "* ]] ||
    fail "pkg-config --static --libs ivy gives '$static_libs'"
mkdir -p "$out/pc"
for e in "${examples[@]}"; do
    name=${e%% *}
    c=$src/examples/$name.c
    {
        $cc -O2 "$c" -o "$out/pc/$name-shared" $(pkg-config --cflags --libs ivy) \
            -Wl,-rpath,"$libdir" &&
            $cc -O2 "$c" -o "$out/pc/$name-static" $(pkg-config --cflags --libs ivy-static) &&
            $cc -O2 "$c" -o "$out/pc/$name-allstatic" -static \
                $(pkg-config --cflags --libs --static ivy)
    } >"$out/pc.log" 2>&1 || { cat "$out/pc.log"; fail "$name: build with pkg-config"; }
done
check_all "$out/pc" -shared shared
check_all "$out/pc" -static static
check_all "$out/pc" -allstatic none

names=$(printf '%s;' "${examples[@]%% *}")
# The consumer project in build directory $1, with more cmake arguments after it.
consumer() {
    local dir=$1
    shift
    cmake -S "$src/tests/consumer" -B "$dir" -DIVY_EXAMPLES="$names" \
        -DIVY_EXAMPLES_DIR="$src/examples" "$@" >"$dir.log" ||
        { cat "$dir.log"; fail "configure $dir"; }
    cmake --build "$dir" -j "$jobs" >>"$dir.log" || { cat "$dir.log"; fail "build $dir"; }
}
consumer "$out/find_package" -DCMAKE_PREFIX_PATH="$prefix" -DIVY_EXPECT_VERSION="$version"
check_all "$out/find_package" "" shared
check_all "$out/find_package" -static static
consumer "$out/find_package_static" -DCMAKE_PREFIX_PATH="$prefix" \
    -DIVY_EXPECT_VERSION="$version" -DIVY_USE_STATIC_LIBS=ON
check_all "$out/find_package_static" "" static

# add_subdirectory: its build is kept in WORK-DIR (the library compiles once).
sub=$work/add_subdirectory
consumer "$sub" -DIVY_SOURCE_DIR="$src"
! grep -q CMOCKA "$sub/CMakeCache.txt" || fail "add_subdirectory(ivy) looked for cmocka"
! grep -q JEMALLOC "$sub/CMakeCache.txt" || fail "add_subdirectory(ivy) looked for jemalloc"
check_all "$sub" "" static
# An app module, built as its users build one: against the headers alone, loaded by bin/ivy.
$cc -shared -fPIC -O2 $(pkg-config --cflags ivy) "$src/examples/app_module.c" \
    -o "$out/app_module.so" || fail "app_module.so: build with pkg-config"
! readelf -d "$out/app_module.so" | grep -q 'NEEDED.*libivy' || fail "app_module.so links libivy"
start_server "$prefix/bin/ivy" serve --app "$out/app_module.so" --listen "127.0.0.1:$(free_port)" \
    --workers 1
for _ in $(seq 50); do
    body=$(curl -s --max-time 10 "http://127.0.0.1:$port/hello/you") && break
    sleep 0.1
done
[ "$body" = "hello, you (app_module v1, worker 0)" ] || fail "app_module answered '$body'"
stop_server
step "app_module.so built out of tree serves under the installed ivy"
step "installed ivy $version: pkg-config, find_package(ivy) and add_subdirectory(ivy) work"
