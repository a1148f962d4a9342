#!/bin/sh
# CPU instructions per call of ftrpc's gRPC path beside baidu_std, server and client apart, under
# valgrind's callgrind: a figure that does not depend on what else the machine runs (timed benches
# do). docs/performance.md (gRPC beside baidu_std) records its output.
#
#   scripts/grpc-instructions.sh [BUILD_DIR] [CALLS]     (default build, 4000 calls a cell)
#
# Server side: an `ftrpc echo-server` under callgrind, its counters zeroed after a warm-up and
# dumped after CALLS calls of a native `ftrpc bench`; the dump's total over CALLS. Client side: a
# native server, `ftrpc bench` under callgrind with CALLS and 2*CALLS calls; the difference over
# CALLS (start-up and exit cancel out). Each at 1 and 64 calls in flight, 16-byte payloads. About
# two minutes. callgrind runs one thread at a time, so these are costs, not speeds.
set -eu
BUILD=${1:-build}
CALLS=${2:-4000}
FTRPC=$BUILD/ftrpc
TMP=$(mktemp -d)
trap 'kill $SRV 2>/dev/null || true; rm -rf "$TMP"' EXIT
SRV=

command -v valgrind >/dev/null || {
    echo "valgrind is needed (scripts/install-deps.sh --test)" >&2
    exit 1
}

start_server() { # $1: prefix command (empty: native)
    rm -f "$TMP/listen"
    $1 "$FTRPC" echo-server --listen 127.0.0.1:0 >"$TMP/listen" 2>"$TMP/server.err" &
    SRV=$!
    i=0
    while ! grep -q 'listening on' "$TMP/listen" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 600 ] || {
            echo "server did not start" >&2
            exit 1
        }
        sleep 0.1
    done
    ADDR=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$TMP/listen")
}

stop_server() {
    kill "$SRV"
    wait "$SRV" 2>/dev/null || true
    SRV=
}

# the "totals:" (or "summary:") line of a callgrind output file: instructions
total_of() { sed -n 's/^\(totals\|summary\): *\([0-9]*\).*/\2/p' "$1" | tail -1; }

bench() { # $1 protocol, $2 in flight, $3 calls, $4 prefix command
    $4 "$FTRPC" bench "$ADDR" example.EchoService/Echo --protocol "$1" --concurrency "$2" \
        --count "$3" --timeout-ms 60000 >"$TMP/bench.out" 2>&1 || {
        cat "$TMP/bench.out" >&2
        exit 1
    }
}

printf '%-10s %-9s %18s %18s\n' protocol in_flight server_instr/call client_instr/call
for proto in baidu_std grpc; do
    for inflight in 1 64; do
        # the server's side
        start_server "valgrind --tool=callgrind --callgrind-out-file=$TMP/srv.%p"
        bench "$proto" "$inflight" 500 ""
        callgrind_control -z "$SRV" >/dev/null 2>&1
        bench "$proto" "$inflight" "$CALLS" ""
        callgrind_control -d "$SRV" >/dev/null 2>&1
        dump=$(ls -t "$TMP"/srv.* | head -1)
        srv=$(($(total_of "$dump") / CALLS))
        stop_server
        rm -f "$TMP"/srv.*
        # the client's side
        start_server ""
        bench "$proto" "$inflight" "$CALLS" "valgrind --tool=callgrind --callgrind-out-file=$TMP/c1"
        bench "$proto" "$inflight" $((2 * CALLS)) \
            "valgrind --tool=callgrind --callgrind-out-file=$TMP/c2"
        cli=$((($(total_of "$TMP/c2") - $(total_of "$TMP/c1")) / CALLS))
        stop_server
        printf '%-10s %-9s %18s %18s\n' "$proto" "$inflight" "$srv" "$cli"
    done
done
