#!/usr/bin/env bash
# One-time (idempotent) set-up: the tool's own venv (.venv, Python >= 3.11, taomake + snakemake)
# and the CPU TAO venv that the demo project runs on (`taomake setup tao-cpu`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/.venv"

source "$ROOT/scripts/find-python.sh"

step() { printf '\n== %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  "$(find_python)" -m venv "$VENV"
fi
stamp="$VENV/.taomake-installed"
want=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "installing taomake and its tools into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[dev]"
  echo "$want" > "$stamp"
fi
# Byte-compile the checkout (an editable install compiles nothing): every Snakemake parse and
# every job imports it, and with PYTHONDONTWRITEBYTECODE set Python would compile it from
# source in each of those processes (benchmarks/job_overhead.py).  Fast when nothing changed.
"$VENV/bin/python" -m compileall -q "$ROOT/compiler" "$ROOT/taomake" >/dev/null
# TAOMAKE_SETUP_TAO=0: the tool's venv only (scripts/test.sh builds the TAO venv beside the
# services it installs)
if [ "${TAOMAKE_SETUP_TAO:-1}" != 0 ]; then
  step "TAO RT-DETR CPU venv"
  "$VENV/bin/taomake" setup tao-cpu
fi
