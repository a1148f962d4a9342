#!/usr/bin/env bash
# Runs the unit and integration tests of a ThreadSanitizer build (make tsan, make test).
#   scripts/run-tsan.sh BUILD_DIR
# Every process writes its reports to BUILD_DIR/tsan-reports/ (TSAN_OPTIONS log_path): the tests
# and the ftrpc children they start, whose stderr the harness deletes once they are reaped, and
# which are often stopped with SIGKILL, so their exit code alone would hide a race. Any report
# file fails the run, after CTest passed or not, and is printed.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
reports=$build_dir/tsan-reports
rm -rf "$reports"
mkdir -p "$reports"

# halt_on_error: the first race ends the process (exit 66), so a test cannot pass after one.
# second_deadlock_stack: both stacks of a lock-order inversion. history_size=4: 512K events a
# thread (default 2: 128K) so that the older access of a race still has its stack on a slow run.
# suppressions: third-party code only, each entry with its reason (tests/tsan.supp).
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 history_size=4 \
suppressions=$root/tests/tsan.supp log_path=$reports/tsan"

rc=0
(cd "$build_dir" && ctest --output-on-failure -j 2 -L 'unit|integration' -LE 'no_tsan') || rc=$?

found=$(find "$reports" -type f | sort)
if [ -n "$found" ]; then
  for f in $found; do
    echo "==== $f"
    cat "$f"
  done
  echo "run-tsan: $(echo "$found" | wc -l) ThreadSanitizer report file(s) above" >&2
  rc=1
fi
exit $rc
