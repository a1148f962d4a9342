#!/usr/bin/env bash
# Writes tests/proto/test.protoset, the FileDescriptorSet of tests/proto/*.proto that the tests use
# when protoc is not installed (with protoc, the build makes its own: tests/CMakeLists.txt). Run it
# after changing a file there. Needs protoc (Debian: protobuf-compiler).
set -euo pipefail
cd "$(dirname "$0")/../tests/proto"
protoc --include_imports --descriptor_set_out=test.protoset -I. json_test.proto json_test2.proto echo.proto \
  json_test3.proto
echo "wrote tests/proto/test.protoset"
