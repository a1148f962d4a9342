#!/usr/bin/env bash
# Runs the unit and integration tests of a valgrind build (make valgrind: -DFTRPC_VALGRIND=ON) under
# memcheck, the ftrpc children they start included (tests/CMakeLists.txt wraps both).
#   scripts/run-valgrind.sh BUILD_DIR [CTEST_ARGS...]
# Each process logs to BUILD_DIR/valgrind-logs/<pid>.log. A test fails by itself when memcheck
# finds an error in the test process (--error-exitcode); children are often stopped with SIGKILL or
# their exit code is not looked at, so afterwards every log is read: any log with a non-zero error
# count (memory errors, definite or indirect leaks) fails the run and is printed.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 BUILD_DIR [CTEST_ARGS...]" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
shift
logs=$build_dir/valgrind-logs
rm -rf "$logs"
mkdir -p "$logs"

rc=0
(cd "$build_dir" && ctest --output-on-failure -j 2 -L 'unit|integration' -LE 'no_valgrind' "$@") ||
  rc=$?

bad=0
total=0
for f in "$logs"/*.log; do
  [ -f "$f" ] || continue
  total=$((total + 1))
  # a process killed with SIGKILL writes no summary: nothing to read in its log but what it found
  # before the kill, which memcheck prints as it goes
  if grep -qE 'ERROR SUMMARY: [1-9]|Invalid (read|write|free)|uninitialised|definitely lost: [1-9]|indirectly lost: [1-9]' "$f"; then
    bad=$((bad + 1))
    echo "==== $f"
    cat "$f"
  fi
done
echo "run-valgrind: $total process log(s), $bad with findings"
[ "$bad" -eq 0 ] || rc=1
exit $rc
