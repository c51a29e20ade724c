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
if [ $# -gt 0 ] || [ "${TAOMAKE_TEST_WORKERS:-2}" -lt 2 ]; then
  exec "$PY" -m pytest --durations=30 "$@"
fi
# The whole suite: two pytest runs side by side.  The tests that run the real TAO or use the
# one-node SLURM cluster run one after another in the first (two trainings sharing two cores
# each take three times as long; SLURM jobs of two tests would queue behind each other);
# every other test runs in the second, beside them.  (pytest-xdist's loadgroup would do this
# in one run, but it cannot group tests under pytest 9.)  Each keeps its own temporary folder.
# The first run's progress is shown; the second's report follows it.  The slowest tests of
# each are listed.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/taomake-tests.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pytest -m "not (tao or slurm)" --basetemp "$tmp/other" --durations=15 \
  > "$tmp/other.log" 2>&1 &
other=$!
serial=0
"$PY" -m pytest -m "tao or slurm" --basetemp "$tmp/serial" --durations=15 || serial=$?
rest=0
wait "$other" || rest=$?
printf '\n== the other tests (run beside those above)\n'
cat "$tmp/other.log"
printf '\n== exit: real-TAO and SLURM tests %s, the other tests %s\n' "$serial" "$rest"
[ "$serial" = 0 ] && [ "$rest" = 0 ]
