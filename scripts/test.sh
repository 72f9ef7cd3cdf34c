#!/usr/bin/env bash
# Installs the project with its dev tools into ./.venv (created if missing) and runs
# the check command. This is the README's test command and what CI runs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
PYTHON="$root/.venv/bin/python" exec scripts/check.sh "$@"
