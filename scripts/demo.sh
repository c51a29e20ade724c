#!/usr/bin/env bash
# The main job: set up, then build the demo project (train 2 epochs -> evaluate -> export ->
# ONNX parity -> inference -> report on the bundled shapes data, real TAO on CPU) and print
# where results are and the report table.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
printf '\n== building the demo pipeline (snakemake --cores all)\n'
"$ROOT/.venv/bin/snakemake" --cores all --quiet rules "$@"
printf '\n== results\n'
"$ROOT/.venv/bin/taomake" status
printf '\n== report (results/report/: summary.{md,csv,tex}, curves.png, accuracy_latency.png)\n'
cat "$ROOT/results/report/summary.md"
