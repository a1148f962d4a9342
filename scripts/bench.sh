#!/bin/sh
# Runs the benchmarks of bench/ against a build folder and prints everything they print.
#
#   scripts/bench.sh BUILD_DIR            (what `make bench` runs)
#
# bench_echo runs in full (12 cells, each 5 times: 0.5 s warm-up + 2 s measured: about 2.5 minutes),
# then at 64 KiB and 1 MiB payloads (the large-message targets, PASS/FAIL: about 1 minute);
# every other bench_* binary in BUILD_DIR runs only if its --help mentions --quick, and then with
# --quick, so the whole script stays within a few minutes. Extra arguments for bench_echo can be
# given in BENCH_ECHO_ARGS (for example BENCH_ECHO_ARGS="--quick" or "--payload 1024"). Its JSON
# figures land in BUILD_DIR/bench_echo.json.
#
# At the end, every target line the benchmarks printed (PASS or FAIL, each with its paired ratio
# or its ratio to the target), under the name of the bench that printed it: issue #26's list in
# one place (docs/performance.md).
#
# Exit status: non-zero when a benchmark failed to run (a failed call, a hang, a server that would
# not start); targets that are missed are printed as FAIL but are not an error here: this is a
# measurement, not a test.
set -u

BUILD_DIR=${1:-build}
if [ ! -x "$BUILD_DIR/bench_echo" ]; then
    echo "bench.sh: no $BUILD_DIR/bench_echo; build first (make build)" >&2
    exit 1
fi

status=0
targets=$(mktemp)
trap 'rm -f "$targets"' EXIT

# run NAME COMMAND...: runs it, its output shown as it comes; its target lines kept for the end
run() {
    name=$1
    shift
    rcfile=$(mktemp)
    { "$@" 2>&1; echo $? >"$rcfile"; } | while IFS= read -r line; do
        printf '%s\n' "$line"
        case "$line" in
        *PASS* | *FAIL*) printf '%-28s %s\n' "$name" "$line" >>"$targets" ;;
        esac
    done
    rc=$(cat "$rcfile")
    rm -f "$rcfile"
    [ "$rc" = 0 ] || status=1
}

echo "== bench_echo $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
# shellcheck disable=SC2086 # BENCH_ECHO_ARGS is a list of words on purpose
run bench_echo "$BUILD_DIR/bench_echo" --ftrpc "$BUILD_DIR/ftrpc" --json "$BUILD_DIR/bench_echo.json" \
    ${BENCH_ECHO_ARGS:-}

# Large messages (issue #26): 64 KiB and 1 MiB, async, 1 and 16 in flight, against the raw echo;
# BENCH_ECHO_LARGE=0 skips them (about 1 minute).
if [ "${BENCH_ECHO_LARGE:-1}" != 0 ]; then
    for size in 65536 1048576; do
        echo
        echo "== bench_echo --payload $size (large messages) $(date -u '+%H:%M:%S UTC')"
        run "bench_echo --payload $size" "$BUILD_DIR/bench_echo" --ftrpc "$BUILD_DIR/ftrpc" \
            --payload $size --inflight 1,16 --shape async --no-tls --no-typed --reps 3 --seconds 1 \
            --warmup 0.3
    done
fi

for b in "$BUILD_DIR"/bench_*; do
    if [ ! -f "$b" ] || [ ! -x "$b" ]; then continue; fi
    case "$b" in */bench_echo) continue ;; esac
    if "$b" --help 2>&1 | grep -q -- '--quick'; then
        echo
        echo "== $(basename "$b") --quick"
        run "$(basename "$b")" "$b" --quick
    else
        echo
        echo "== $(basename "$b"): skipped (its --help does not offer --quick)"
    fi
done
echo
echo "== targets, as printed above (PASS/FAIL with the ratio each was judged by) $(date -u '+%H:%M:%S UTC')"
cat "$targets"
exit $status
