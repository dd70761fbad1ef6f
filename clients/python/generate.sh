#!/usr/bin/env bash
# Generates the Python stubs of billpay.v1 from proto/ with grpcio-tools, into OUT (default:
# clients/python/gen, git-ignored). `google/protobuf/timestamp.proto`, the one import from
# outside proto/, ships with grpcio-tools; `google.rpc` (ErrorInfo, BadRequest) comes from the
# googleapis-common-protos package, which grpcio-status depends on.
#   PYTHON=.venv/bin/python clients/python/generate.sh [OUT]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-$ROOT/clients/python/gen}"
rm -rf "$OUT"
mkdir -p "$OUT"
cd "$ROOT"
"${PYTHON:-python3}" -m grpc_tools.protoc -I proto --python_out="$OUT" --grpc_python_out="$OUT" \
    proto/billpay/v1/*.proto
