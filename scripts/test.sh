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
# Two processes by default (TAOMAKE_TEST_WORKERS=N for another number, 0 for one process): the
# tests that run the real TAO go to one worker, one after another (tests/conftest.py: two
# trainings on two cores each take three times as long), while the other worker runs the
# rest, file by file.  The slowest tests are listed at the end.
workers=${TAOMAKE_TEST_WORKERS:-2}
exec "$ROOT/.venv/bin/python" -m pytest -n "$workers" --dist loadgroup --durations=30 "$@"
