#!/usr/bin/env bash
# make demo: starts an echo server, calls it through the CLI (a success, a business error, an
# unknown method, a dead address), then stops the server gracefully. Leaves no process behind.
set -euo pipefail
build=${1:-build}
ftrpc="$build/ftrpc"
out=$(mktemp)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -f "$out"
}
trap cleanup EXIT INT TERM

"$ftrpc" echo-server --listen 127.0.0.1:0 --error-rate 0 >"$out" &
server_pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$out" && break; sleep 0.05; done
addr=$(sed -n 's/^listening on //p' "$out")
[ -n "$addr" ] || { echo "demo: the echo server did not start" >&2; exit 1; }
echo "== echo server listening on $addr"

step() { echo; echo "\$ ftrpc $*"; "$ftrpc" "$@" 2>&1 || echo "(exit $?)"; }
step call "$addr" example.EchoService/Echo --data "hello, ftrpc" --verbose
step call "$addr" example.EchoService/Nope --data "x"
step call 127.0.0.1:1 example.EchoService/Echo --data "x" --verbose
echo
echo "== stopping the server gracefully (SIGTERM)"
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=""
echo "== done"
