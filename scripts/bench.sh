#!/usr/bin/env bash
# Runs every benchmark built from bench/*.c (executables bench_<name> in the build folder given as
# $1, default "build"), one after the other so they do not share the cores, and prints each one's
# table. Each benchmark measures its own baseline in the same run and prints the ratio to it.
set -euo pipefail
BUILD="${1:-build}"
shopt -s nullglob
benches=("$BUILD"/bench_*)
if [ ${#benches[@]} -eq 0 ]; then
  echo "bench.sh: no bench_* executables in $BUILD (build first)" >&2
  exit 1
fi
echo "machine: $(nproc) cores, $(. /etc/os-release && echo "$PRETTY_NAME"), $(uname -m)"
for b in "${benches[@]}"; do
  [ -x "$b" ] || continue
  echo
  echo "== $(basename "$b")"
  "$b"
done
