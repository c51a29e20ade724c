#!/usr/bin/env bash
# The test suite: set up everything the tests need, then run pytest (extra args go to pytest).
# It starts a local S3 server (SeaweedFS, no root needed) and, as root (CI), installs and starts
# the other services the tests use: a Docker engine with a locally built TAO CPU test image, and
# a single-node SLURM cluster.  Without root those tests skip with the command to run (in CI
# they fail instead).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
if [ "$(id -u)" = 0 ]; then
  for service in docker tao-cpu-image slurm chromium; do
    printf '\n== service: %s\n' "$service"
    PYTHON="$ROOT/.venv/bin/python" PATH="$ROOT/.venv/bin:$PATH" \
      bash "$ROOT/scripts/services/$service.sh"
  done
else
  printf '\n== not root: docker/SLURM/Chromium services not started (their tests skip)\n'
fi
printf '\n== service: s3\n'
PYTHON="$ROOT/.venv/bin/python" PATH="$ROOT/.venv/bin:$PATH" bash "$ROOT/scripts/services/s3.sh"
printf '\n== pytest\n'
PY="$ROOT/.venv/bin/python"
# Given arguments (a file, -k, -m ...): one pytest run with them.
if [ $# -gt 0 ] || [ "${TAOMAKE_TEST_WORKERS:-4}" -lt 2 ]; then
  exec "$PY" -m pytest --durations=30 "$@"
fi
# The whole suite: four pytest-xdist workers, each taking a whole test file at a time (the
# tests of a file share its built pipeline; the one-node SLURM cluster is used by one file
# only).  The four slowest files start first, one per worker, side by side; a worker takes the
# next file when its current one is nearly done, so the many small files fill in beside them.
# Four workers on two cores: a TAO job is mostly single-threaded start-up, and the SLURM and
# Docker tests mostly wait.  The slowest tests are listed at the end.
SLOWEST_FIRST=(tests/test_e2e_learning.py tests/test_slurm.py tests/test_e2e_experiments.py
               tests/test_docker_runner.py tests/test_e2e_tao.py tests/test_tao_cpu.py)
exec "$PY" -m pytest -n "${TAOMAKE_TEST_WORKERS:-4}" --dist loadfile --no-loadscope-reorder \
  --durations=30 "${SLOWEST_FIRST[@]}" tests
