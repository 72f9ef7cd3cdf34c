#!/usr/bin/env bash
# Regenerates the Python code for proto/ into sentinel/ (committed).
# Usage: scripts/gen_proto.sh [OUT_DIR]   (default: the repository root)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root}"
py="${PYTHON:-python}"
cd "$root"
mapfile -t protos < <(find proto -name '*.proto' | sort)
"$py" -m grpc_tools.protoc -Iproto \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" "${protos[@]}"
