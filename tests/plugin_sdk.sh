#!/usr/bin/env bash
# The plugin SDK end to end: `make sdk-install` into a temp DESTDIR, build
# plugins/examples/hello from a copy outside the tree with nothing but
# pkg-config's flags, and load the result with the worker's loader
# (build/asan/tests/plugins_test, OM_TEST_SDK_PLUGIN).  Exit 0 on success.
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d /tmp/om-plugin-sdk-XXXXXX)
trap 'rm -rf -- "$tmp"' EXIT

step() { echo "== $*"; }

step "sdk-install into $tmp/root"
make -C "$TOP" --no-print-directory sdk-install PREFIX=/usr/local DESTDIR="$tmp/root"
pc=$tmp/root/usr/local/lib/pkgconfig/omserver-plugin.pc
test -f "$pc" || { echo "no $pc" >&2; exit 1; }
test -f "$tmp/root/usr/local/include/omserver/plugin.h"

step "build the example out of tree"
cp -r "$TOP/plugins/examples/hello" "$tmp/hello"
rm -f "$tmp/hello/hello.so"
export PKG_CONFIG_PATH=$tmp/root/usr/local/lib/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$tmp/root
export PKG_CONFIG_LIBDIR=$tmp/root/usr/local/lib/pkgconfig # no system .pc can stand in
flags=$(pkg-config --cflags omserver-plugin)
echo "pkg-config --cflags omserver-plugin: $flags"
[[ $flags == *"$tmp/root/usr/local/include"* ]] || { echo "cflags do not point into DESTDIR" >&2; exit 1; }
make -C "$tmp/hello" --no-print-directory
test -f "$tmp/hello/hello.so"

step "load it with the worker's loader"
bin=$TOP/build/asan/tests/plugins_test
[[ -x $bin ]] || { echo "$bin missing (make build/asan/tests/plugins_test)" >&2; exit 1; }
out=$(cd "$TOP" && OM_TEST_SDK_PLUGIN="$tmp/hello/hello.so" CMOCKA_MESSAGE_OUTPUT=STDOUT "$bin" 2>&1) || {
	echo "$out"
	exit 1
}
echo "$out" | grep -E 'test_sdk_plugin' || true
echo "$out" | grep -qE '^\[ +OK +\] test_sdk_plugin$' || { echo "$out"; echo "test_sdk_plugin did not pass" >&2; exit 1; }
echo "ok - the SDK-built plugin loads"
