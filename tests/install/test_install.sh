#!/bin/sh
# Installs a build of ftrpc into a temporary prefix, then builds against that prefix alone, as a
# user would, the ftrpc command (src/cli), examples/echo.c and the typed greeter
# (examples/greeter: a .proto, a server, a client): once with CMake's find_package(ftrpc) (the
# project beside this script: the command and the greeter's server on ftrpc::ftrpc_static, the
# examples' clients on ftrpc::ftrpc_shared, the .proto through the installed
# ftrpc_protobuf_generate) and once with `pkg-config --cflags --libs ftrpc` (all on libftrpc.so,
# the .proto through protoc-c by hand). Then runs what it built: the examples, the commands against
# an echo-server of their own, and each greeter client against the other build's server.
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

# The address a server started with its output in BASE.out and BASE.err prints ("listening on
# ADDR"), waited for (bounded); NAME names it in the failure
listening_addr() {
    tries=0
    until grep -q '^listening on ' "$1.out"; do
        tries=$((tries + 1))
        test $tries -lt 100 || fail "$2 did not start: $(cat "$1.err")"
        sleep 0.1
    done
    sed -n 's/^listening on //p' "$1.out"
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
    ftrpcTargets.cmake ftrpcProtobuf.cmake; do
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
# the greeter: protoc-c by hand, the generated code compiled with the programs
logged "$work/pc-protoc-c.log" protoc-c --c_out="$work/pc" -I"$src/examples/greeter" \
    "$src/examples/greeter/greeter.proto"
for name in greeter_server greeter_client; do
    # shellcheck disable=SC2086
    logged "$work/pc-$name.log" "$cc" -std=c11 -D_GNU_SOURCE $checks $cflags -I"$work/pc" \
        "$src/examples/greeter/$name.c" "$work/pc/greeter.pb-c.c" -o "$work/pc/$name" $libs \
        $("$pkg_config" --libs libprotobuf-c) -Wl,-rpath,"$libdir" -pthread
done
for program in pc/ftrpc pc/echo cmake/echo pc/greeter_server pc/greeter_client \
    cmake/greeter_client; do
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
addr=$(listening_addr "$work/server" "the echo-server")
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

step "the greeter: each build's client against the other build's server"
for pair in cmake:pc pc:cmake; do
    sdir=${pair%%:*} cdir=${pair#*:}
    "$work/$sdir/greeter_server" >"$work/greeter.out" 2>"$work/greeter.err" &
    server=$!
    trap 'kill $server 2>/dev/null || true' EXIT
    addr=$(listening_addr "$work/greeter" "$sdir/greeter_server")
    out=$("$work/$cdir/greeter_client" "list://$addr" installed) || fail "$cdir/greeter_client failed"
    test "$out" = "Hello, installed" || fail "$cdir/greeter_client printed '$out'"
    out=$("$work/$cdir/ftrpc" list "$addr") || fail "ftrpc list failed"
    echo "$out" | grep -q 'SayHello(helloworld.HelloRequest) returns (helloworld.HelloReply)' ||
        fail "ftrpc list printed '$out'"
    kill "$server"
    wait "$server" || true
    trap - EXIT
done
step "ok"
