#!/usr/bin/env bash
# Create .venv (if missing) and install the package with its pinned dependencies. Idempotent.
# Usage: scripts/setup.sh [extras]   (default extras: test)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q -c constraints.txt -e ".[${extras}]"
