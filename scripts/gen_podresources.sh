#!/usr/bin/env bash
# Regenerates the Python code for the vendored kubelet pod-resources proto
# (third_party/podresources/v1/api.proto) into edge_agent/podresources/v1/ (committed).
# Usage: scripts/gen_podresources.sh [OUT_DIR]   (default: the repository root)
#
# The proto path maps the virtual directory edge_agent/podresources onto third_party/podresources,
# so protoc sees the file as edge_agent/podresources/v1/api.proto: the modules land in that package
# and api_pb2_grpc.py imports `from edge_agent.podresources.v1 import api_pb2`. The proto package
# stays `v1`, so the service is still `v1.PodResourcesLister` on the wire.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root}"
py="${PYTHON:-python}"
cd "$root"
"$py" -m grpc_tools.protoc -Iedge_agent/podresources=third_party/podresources \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  third_party/podresources/v1/api.proto
