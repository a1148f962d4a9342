#!/bin/sh
# Instructions per echo call, typed against bytes, server and client counted apart, with
# callgrind: what a typed call costs over a call of bytes, as a count that the machine's load does
# not move (docs/performance.md, "Typed echo beside the bytes echo").
#
# For each side (server, client) and kind (typed, bytes) it runs bench_typed_cost for LOW and HIGH
# calls at 64 in flight against bench_echo's server of that kind (`ftrpc echo-server` for bytes,
# `bench_echo --typed-server` for typed), with that side under callgrind and the other native,
# and prints (Ir(HIGH) - Ir(LOW)) / (HIGH - LOW): start-up and teardown cancel out. Every thread
# of the profiled process counts (the IO threads do the work; the main thread waits).
#
#   scripts/typed-cost.sh [BUILD_DIR (build)] [LOW (5000)] [HIGH (15000)] [KINDS ("typed bytes")]
#
# KINDS "bytes" counts the bytes path alone (issue #26's small-message async cost,
# docs/performance.md). With KEEP=DIR in the environment the callgrind files stay in DIR
# (SIDE-KIND-COUNT.cg) for callgrind_annotate.
set -eu
build=${1:-build}
low=${2:-5000}
high=${3:-15000}
kinds=${4:-typed bytes}
drv=$build/bench_typed_cost
for f in "$drv" "$build/bench_echo" "$build/ftrpc"; do
    [ -x "$f" ] || { echo "typed-cost.sh: $f not built" >&2; exit 2; }
done
command -v valgrind >/dev/null || { echo "typed-cost.sh: valgrind not found" >&2; exit 2; }
tmp=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$tmp"/*.cg "$KEEP"/ 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# Starts the server (its command in "$@"), sets server_pid and port.
start_server() {
    rm -f "$tmp/server.out" # not the last server's: the new one's redirection may come later
    "$@" >"$tmp/server.out" 2>"$tmp/server.err" &
    server_pid=$!
    i=0
    while ! grep -q '^listening on .*:[0-9][0-9]*$' "$tmp/server.out" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 600 ] || { echo "typed-cost.sh: server did not start" >&2; cat "$tmp/server.err" >&2; exit 1; }
        sleep 0.1
    done
    port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$tmp/server.out" | head -1)
}

stop_server() {
    kill -TERM "$server_pid"
    wait "$server_pid" || true
    server_pid=
}

# The instructions a callgrind output file counts (all threads: one file, --separate-threads=no).
total() {
    sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$1"
}

cg="valgrind --tool=callgrind --separate-threads=no"
for side in server client; do
    for kind in $kinds; do
        if [ $kind = typed ]; then
            server="$build/bench_echo --typed-server 127.0.0.1"
        else
            server="$build/ftrpc echo-server --listen 127.0.0.1:0"
        fi
        for n in $low $high; do
            out=$tmp/$side-$kind-$n.cg
            if [ $side = server ]; then
                start_server $cg --callgrind-out-file="$out" $server
                "$drv" $kind "$port" "$n" >/dev/null
                stop_server
            else
                start_server $server
                $cg --callgrind-out-file="$out" "$drv" $kind "$port" "$n" >/dev/null 2>"$tmp/client.err" ||
                    { cat "$tmp/client.err" >&2; exit 1; }
                stop_server
            fi
        done
        a=$(total "$tmp/$side-$kind-$low.cg")
        b=$(total "$tmp/$side-$kind-$high.cg")
        echo "$side $kind: $(( (b - a) / (high - low) )) instructions/call ($low calls: $a, $high calls: $b)"
    done
done
