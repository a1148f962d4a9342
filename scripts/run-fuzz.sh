#!/usr/bin/env bash
# Runs every libFuzzer binary of a fuzz build (BUILD_DIR/tests/fuzz_*) for a share of SECONDS.
#   scripts/run-fuzz.sh BUILD_DIR SECONDS        (make fuzz: build-fuzz, FUZZ_SECONDS)
# Each target gets max(10, SECONDS / number of targets) seconds and starts from a copy of its
# checked-in corpus (tests/fuzz/corpus/<parser>/) in a temporary directory, so the checked-in
# corpus never grows. A crash, leak or timeout makes the script exit non-zero and leaves the
# reproducer under BUILD_DIR/fuzz-artifacts/<target>/; add it to the corpus as a regression.
# UBSan's findings stop the target too (halt_on_error): the fuzz build compiles its checks as
# recoverable, and without this they would only print a line in a log nobody reads.
set -euo pipefail
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build_dir=$1
seconds=$2
root=$(cd "$(dirname "$0")/.." && pwd)

targets=()
for bin in "$build_dir"/tests/fuzz_*; do
  [ -f "$bin" ] && [ -x "$bin" ] && targets+=("$bin")
done
if [ ${#targets[@]} -eq 0 ]; then
  echo "run-fuzz: no fuzz_* binaries in $build_dir/tests (build with -DFTRPC_FUZZ=ON and clang)" >&2
  exit 1
fi

per_target=$((seconds / ${#targets[@]}))
[ "$per_target" -lt 10 ] && per_target=10

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=0
for bin in "${targets[@]}"; do
  name=$(basename "$bin")
  parser=${name#fuzz_}
  corpus="$work/$name"
  mkdir -p "$corpus"
  if [ -d "$root/tests/fuzz/corpus/$parser" ]; then
    cp -r "$root/tests/fuzz/corpus/$parser/." "$corpus/"
  fi
  artifacts="$build_dir/fuzz-artifacts/$name"
  mkdir -p "$artifacts"
  echo "run-fuzz: $name for ${per_target}s"
  log="$work/$name.log"
  if "$bin" -max_total_time="$per_target" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
       -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "$log" || true
  else
    failed=1
    tail -n 60 "$log"
    echo "run-fuzz: $name FAILED; reproducer(s) in $artifacts/" >&2
  fi
done
exit $failed
