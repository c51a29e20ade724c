#!/usr/bin/env bash
# The main job: set up, then build the demo project (train 40 epochs -> evaluate -> export ->
# ONNX parity -> inference -> per-class detections -> report on the bundled shapes data, real
# TAO on CPU) and print where results are, the report table and the per-class table.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# Snakemake's scheduling chatter out; TAO's progress and taomake's lines stay (as do
# Snakemake's "N of M steps done" and errors).  grep's "no line" (1) is not a failure.
quiet() {
  grep --line-buffered -v -E '^(Select jobs to execute\.\.\.|Execute [0-9]+ jobs\.\.\.|Assuming unrestricted shared filesystem usage\.|Using shell: .*|Conda environments: ignored|\[[A-Z][a-z]{2} [A-Z][a-z]{2} +[0-9]+ [0-9:]+ [0-9]{4}\])$' \
    || [ $? -eq 1 ]
}
printf '\n== building the demo pipeline (snakemake --cores all)\n'
"$ROOT/.venv/bin/snakemake" --cores all --quiet rules host "$@" 2>&1 | quiet
printf '\n== results\n'
"$ROOT/.venv/bin/taomake" status
printf '\n== report (results/report/: summary.{md,csv,tex}, curves.png, accuracy_latency.png, test_grid_base.png)\n'
cat "$ROOT/results/report/summary.md"
printf '\n== per class (results/base/detections/per_class.md)\n'
cat "$ROOT/results/base/detections/per_class.md"
