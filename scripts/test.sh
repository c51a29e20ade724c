#!/usr/bin/env bash
# The test suite: set up everything the tests need, then run pytest (extra args go to pytest).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
printf '\n== pytest\n'
exec "$ROOT/.venv/bin/python" -m pytest "$@"
