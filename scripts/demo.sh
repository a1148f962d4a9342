#!/usr/bin/env bash
# make demo: runs `ftrpc demo`, which starts a local cluster of echo servers (child processes
# registered in a dir:// registry in a temporary folder), plays fault scenarios against it, prints
# a table and writes an HTML report. The demo cleans up after itself, Ctrl-C included (its
# children die with it), so this script only checks the binary and hands over with exec: the
# signals of the terminal then reach the demo directly.
#   scripts/demo.sh [BUILD_DIR] [ftrpc demo options, e.g. --quick --report FILE]
set -euo pipefail
build=${1:-build}
if [ $# -gt 0 ]; then shift; fi
ftrpc="$build/ftrpc"
if [ ! -x "$ftrpc" ]; then
  echo "demo: $ftrpc is missing: build first (make build)" >&2
  exit 1
fi
# The demo's registry and report go under TMPDIR; fall back to the build folder when /tmp is
# not writable (read-only containers).
if [ -z "${TMPDIR:-}" ] && [ ! -w /tmp ]; then
  export TMPDIR="$build"
fi
exec "$ftrpc" demo "$@"
