#!/usr/bin/env bash
# Installs Prometheus (Debian) when missing, the project with its dev tools into ./.venv
# (created if missing), and runs the check command. This is the README's test command and what CI runs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# Debian's prometheus package: promtool checks both /metrics endpoints, and the policy tests run
# a real Prometheus server for SLO guards.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "promtool or prometheus is missing: install Debian's prometheus package" \
      "(apt-get install prometheus)" >&2
    exit 1
  fi
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
PYTHON="$root/.venv/bin/python" exec scripts/check.sh "$@"
