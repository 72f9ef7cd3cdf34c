#!/usr/bin/env bash
# The one check command: format, lint, types, import layers, buf, generated-code
# freshness, tests. Run from anywhere; uses the interpreter in $PYTHON or `python`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
py="${PYTHON:-python}"
bin="$(dirname "$(command -v "$py")")"
step() { printf '\n== %s\n' "$*"; }

step "ruff format"
"$py" -m ruff format --check .
step "ruff check"
"$py" -m ruff check .
step "mypy"
"$py" -m mypy sentinel hub edge_agent policy rollout certs cli
step "import layers"
"$bin/lint-imports"
step "buf lint + format"
"$bin/buf" lint
"$bin/buf" format -d --exit-code
step "generated code is fresh"
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT
PYTHON="$py" scripts/gen_proto.sh "$fresh"
if ! diff -r -x __init__.py -x __pycache__ "$fresh/sentinel" sentinel \
     | grep -v '^Only in sentinel' > "$fresh/diff.txt"; then :; fi
if [ -s "$fresh/diff.txt" ]; then
  cat "$fresh/diff.txt"
  echo "generated code is stale: run scripts/gen_proto.sh and commit the result" >&2
  exit 1
fi
# The vendored kubelet pod-resources proto (third_party/, outside the buf module), same rule.
PYTHON="$py" scripts/gen_podresources.sh "$fresh"
if ! diff -r -x __init__.py -x __pycache__ "$fresh/edge_agent/podresources" \
     edge_agent/podresources > "$fresh/diff-podresources.txt"; then
  cat "$fresh/diff-podresources.txt"
  echo "generated code is stale: run scripts/gen_podresources.sh and commit the result" >&2
  exit 1
fi
step "pytest"
"$py" -m pytest "$@"
