#!/usr/bin/env bash
# libivy.so exports exactly the public API: every ivy_* function that include/ivy/*.h declares
# and the library defines, nothing internal (ivy__*), nothing else; its SONAME carries
# IVY_ABI_VERSION.   Usage: test_exports.sh LIBIVY.SO LIBIVY.A ABI HEADER-DIR...
set -euo pipefail
so=$1 archive=$2 abi=$3
shift 3
fail() { echo "test_exports: FAIL: $*" >&2; exit 1; }

soname=$(readelf -d "$so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "libivy.so.$abi" ] || fail "SONAME is '$soname', not libivy.so.$abi"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$so" | awk '{print $NF}' | sort -u >"$tmp/exported"
for dir in "$@"; do cat "$dir"/*.h; done | grep -oE '\bivy_[a-z0-9][a-z0-9_]*[[:space:]]*\(' | tr -d ' \t(' |
    sort -u >"$tmp/declared"
nm -g --defined-only "$archive" | awk 'NF == 3 && $3 ~ /^ivy_/ {print $3}' | sort -u >"$tmp/defined"

internal=$(grep '^ivy__' "$tmp/exported" || true)
[ -z "$internal" ] || fail "internal symbols exported: $(echo $internal)"
foreign=$(grep -v '^ivy_' "$tmp/exported" || true)
[ -z "$foreign" ] || fail "symbols outside the API exported: $(echo $foreign)"
undeclared=$(comm -23 "$tmp/exported" "$tmp/declared")
[ -z "$undeclared" ] || fail "exported but declared in no public header: $(echo $undeclared)"
comm -12 "$tmp/declared" "$tmp/defined" >"$tmp/public"
missing=$(comm -23 "$tmp/public" "$tmp/exported")
[ -z "$missing" ] || fail "public functions not exported: $(echo $missing)"
for f in ivy_spawn ivy_run ivy_listen ivy_accept ivy_recv ivy_version ivy_version_string; do
    grep -qx "$f" "$tmp/exported" || fail "$f is not exported"
done
# ivy_* functions that are neither public (in a header) nor internal (ivy__*) break the naming
# rule; they are hidden from libivy.so like internal ones, so only say so.
stray=$(grep -v '^ivy__' "$tmp/defined" | comm -23 - "$tmp/declared")
[ -z "$stray" ] || echo "test_exports: note: ivy_* defined but in no public header" \
    "(hidden; name them ivy__* or declare them): $(echo $stray)"
echo "test_exports: $(wc -l <"$tmp/exported") public functions exported, none internal, SONAME $soname"
