#!/usr/bin/env bash
# dist/systemd's units as test_install installed them: systemd-analyze verify parses both and
# finds the ivy command they start, without a complaint. Skips (77) without systemd-analyze.
# (test_systemd.c runs the protocol they rely on: LISTEN_FDS and sd_notify.)
#   Usage: test_systemd.sh PREFIX
set -euo pipefail
prefix=$1
fail() { echo "test_systemd_units: FAIL: $*" >&2; exit 1; }
if ! command -v systemd-analyze >/dev/null; then
    echo "test_systemd_units: SKIP: no systemd-analyze (the Debian package systemd)"
    exit 77
fi
dir=$prefix/share/doc/ivy/examples/systemd
for u in ivy.socket ivy.service; do
    [ -f "$dir/$u" ] || fail "$dir/$u not installed"
done
grep -qx 'Type=notify' "$dir/ivy.service" || fail "ivy.service is not Type=notify"
grep -qx "ExecStart=$prefix/bin/ivy serve --app http --listen 127.0.0.1:8080" "$dir/ivy.service" ||
    fail "ivy.service does not start $prefix/bin/ivy"
grep -qx 'ListenStream=127.0.0.1:8080' "$dir/ivy.socket" || fail "ivy.socket listens elsewhere"
# verify exits 0 on mere parse errors, which it prints: any output is a failure.
out=$(systemd-analyze verify "$dir/ivy.socket" "$dir/ivy.service" 2>&1) ||
    fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify complained: $out"
echo "test_systemd_units: ivy.socket and ivy.service verified"
