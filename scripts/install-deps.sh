#!/usr/bin/env bash
# Installs the Debian 12 packages ftrpc needs to build, test and demo, and only those missing.
# Run as root (or with sudo available). Safe to run again: it does nothing when all are present.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang
  libuv1-dev libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler
  libssl-dev libcurl4-openssl-dev libjson-c-dev zlib1g-dev libnghttp2-dev
  libcmocka-dev
  openssl curl python3 python3-prometheus-client
)
# chromium: the console test opens the page headless (tests/integration/test_console_chromium.c);
# python3-grpcio: the gRPC tests talk to ftrpc with a real gRPC peer (tests/integration/grpc_peer.py);
# libgrpc++-dev, protobuf-compiler-grpc: the same tests and bench_echo with a gRPC C++ peer
# (tests/integration/grpc_cpp_peer.cc, built with g++ from build-essential);
# clang-format: make test checks the formatting (make check-format)
# nftables, iproute2: tests/netfault drops packets between hosts of its own network namespace
[ "${1:-}" = "--test" ] && PACKAGES+=(etcd-server etcd-client valgrind chromium clang-format \
  nftables iproute2 python3-grpcio libgrpc++-dev protobuf-compiler-grpc)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
