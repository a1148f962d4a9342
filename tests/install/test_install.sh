#!/bin/sh
# Installs a build of ftrpc into a temporary prefix, then builds against that prefix alone, as a
# user would, the ftrpc command (src/cli) and examples/echo.c: once with CMake's
# find_package(ftrpc) (the project beside this script: the command on ftrpc::ftrpc_static, the
# example on ftrpc::ftrpc_shared) and once with `pkg-config --cflags --libs ftrpc` (both on
# libftrpc.so). Then runs what it built: the examples, and the commands against an echo-server of
# their own.
#
# Not `pkg-config --static`: it adds the Libs.private of every dependency too, and Debian's
# libcurl names there libraries whose development packages are not installed (-lnghttp2,
# -lgssapi_krb5...), so the static library is linked through its CMake target here.
#
# What fails it: a file missing from the install; a function the programs call that the installed
# headers do not declare (-Werror=implicit-function-declaration); one that libftrpc.so does not
# export (the links on the shared library); a dependency the CMake package forgets (the static
# link); a program that does not work.
#
# usage: test_install.sh SOURCE_DIR BUILD_DIR WORK_DIR
# (CC, CMAKE and PKG_CONFIG name the tools; WORK_DIR is emptied first)
set -eu

src=$1 build=$2 work=$3
cc=${CC:-cc} cmake=${CMAKE:-cmake} pkg_config=${PKG_CONFIG:-pkg-config}
checks="-Wall -Werror=implicit-function-declaration -Werror=int-conversion -Werror=incompatible-pointer-types"

step() { printf '== %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}
# runs a command with its output in a log, shown when it fails
logged() {
    log=$1
    shift
    if ! "$@" >"$log" 2>&1; then
        cat "$log"
        fail "$*"
    fi
}

rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix

step "cmake --install $build --prefix $prefix"
logged "$work/install.log" "$cmake" --install "$build" --prefix "$prefix"
for h in "$src"/include/ftrpc/*.h; do
    test -f "$prefix/include/ftrpc/${h##*/}" || fail "include/ftrpc/${h##*/} was not installed"
done
for f in libftrpc.a libftrpc.so ftrpc.pc ftrpcConfig.cmake ftrpcConfigVersion.cmake \
    ftrpcTargets.cmake; do
    test -n "$(find "$prefix" -name "$f")" || fail "$f was not installed"
done
libdir=$(dirname "$(find "$prefix" -name libftrpc.a)")

step "find_package(ftrpc)"
logged "$work/cmake-configure.log" "$cmake" -S "$src/tests/install" -B "$work/cmake" \
    -DCMAKE_PREFIX_PATH="$prefix" -DFTRPC_SOURCE_DIR="$src" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_BUILD_TYPE=Debug
logged "$work/cmake-build.log" "$cmake" --build "$work/cmake" -j2

step "pkg-config --cflags --libs ftrpc"
PKG_CONFIG_PATH=$(dirname "$(find "$prefix" -name ftrpc.pc)")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_PATH
cflags=$("$pkg_config" --cflags ftrpc)
libs=$("$pkg_config" --libs ftrpc)
printf 'cflags: %s\nlibs: %s\n' "$cflags" "$libs"
mkdir -p "$work/pc"
# The command uses pthread and libm itself; -D_GNU_SOURCE as in the tree's build.
# shellcheck disable=SC2086 # the flags are words
logged "$work/pc-ftrpc.log" "$cc" -std=c11 -D_GNU_SOURCE $checks $cflags "$src"/src/cli/*.c \
    -o "$work/pc/ftrpc" $libs -Wl,-rpath,"$libdir" -lm -pthread
# shellcheck disable=SC2086
logged "$work/pc-echo.log" "$cc" -std=c11 $checks $cflags "$src/examples/echo.c" \
    -o "$work/pc/echo" $libs -Wl,-rpath,"$libdir"
for program in pc/ftrpc pc/echo cmake/echo; do
    ldd "$work/$program" | grep -q "$libdir/libftrpc.so" ||
        fail "$program does not load the installed libftrpc.so: $(ldd "$work/$program")"
done
if ldd "$work/cmake/ftrpc" | grep -q libftrpc; then fail "cmake/ftrpc loads libftrpc.so"; fi

step "run them"
for dir in cmake pc; do
    out=$("$work/$dir/echo" 0) || fail "$dir/echo failed"
    test "$out" = hi || fail "$dir/echo printed '$out', not 'hi'"
    logged "$work/$dir-help.log" "$work/$dir/ftrpc" --help
done
"$work/pc/ftrpc" echo-server --listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
tries=0
until grep -q '^listening on ' "$work/server.out"; do
    tries=$((tries + 1))
    test $tries -lt 100 || fail "the echo-server did not start: $(cat "$work/server.err")"
    sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$work/server.out")
out=$("$work/cmake/ftrpc" call "$addr" example.EchoService/Echo --data installed) ||
    fail "ftrpc call failed"
test "$out" = installed || fail "ftrpc call printed '$out', not 'installed'"
out=$("$work/pc/ftrpc" registry ls "list://$addr") || fail "ftrpc registry ls failed"
test "$out" = "$addr weight=100" || fail "ftrpc registry ls printed '$out'"
"$work/pc/ftrpc" bench "$addr" example.EchoService/Echo --count 200 --concurrency 2 \
    >"$work/bench.out" 2>&1 || { cat "$work/bench.out"; fail "ftrpc bench failed"; }
grep -q ': 200 ok, 0 errors' "$work/bench.out" || { cat "$work/bench.out"; fail "ftrpc bench"; }
kill "$server"
wait "$server" || true
trap - EXIT
step "ok"
