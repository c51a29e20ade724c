#!/usr/bin/env bash
# The test suite: set up everything the tests need, then run pytest (extra args go to pytest).
# It starts a local S3 server (SeaweedFS, no root needed) and, as root (CI), installs and starts
# the other services the tests use: a Docker engine with a locally built TAO CPU test image, and
# a single-node SLURM cluster.  Without root those tests skip with the command to run (in CI
# they fail instead).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source "$ROOT/scripts/find-python.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/taomake-test-setup.XXXXXX")
tao_venv=""
cleanup() { [ -z "$tao_venv" ] || kill "$tao_venv" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
since() { printf '(at %ds)' "$SECONDS"; }  # seconds since this script started
# The TAO venv (downloads and unpacking: the longest step of the set-up on a fresh machine)
# is built first, beside the tool's venv and the services: its builder needs only the
# standard library, so it runs from the checkout with the Python the tool's venv is made with.
# Its log is printed when everything else is done.
printf '\n== TAO RT-DETR CPU venv (building beside the rest: log below) %s\n' "$(since)"
PYTHONPATH="$ROOT" "$(find_python)" -m taomake.tao_cpu.setup > "$tmp/tao-venv.log" 2>&1 &
tao_venv=$!
TAOMAKE_SETUP_TAO=0 bash "$ROOT/scripts/setup.sh"
service() {
  printf '\n== service: %s %s\n' "$1" "$(since)"
  PYTHON="$ROOT/.venv/bin/python" PATH="$ROOT/.venv/bin:$PATH" bash "$ROOT/scripts/services/$1.sh"
}
if [ "$(id -u)" = 0 ]; then
  for name in docker slurm chromium; do service "$name"; done
fi
service s3
rc=0
wait "$tao_venv" || rc=$?
printf '\n== TAO RT-DETR CPU venv (log) %s\n' "$(since)"
cat "$tmp/tao-venv.log"
tao_venv=""
[ "$rc" = 0 ] || { echo "test.sh: building the TAO venv failed (exit $rc)" >&2; exit "$rc"; }
if [ "$(id -u)" = 0 ]; then
  service tao-cpu-image  # the venv is mounted into it
else
  printf '\n== not root: docker/SLURM/Chromium services not started (their tests skip)\n'
fi
cleanup
trap - EXIT
printf '\n== pytest %s\n' "$(since)"
PY="$ROOT/.venv/bin/python"
# Given arguments (a file, -k, -m ...): one pytest run with them.
if [ $# -gt 0 ] || [ "${TAOMAKE_TEST_WORKERS:-4}" -lt 2 ]; then
  exec "$PY" -m pytest --durations=30 "$@"
fi
# The whole suite: four pytest-xdist workers, each taking a whole test file at a time (the
# tests of a file share its built pipeline; the one-node SLURM cluster is used by one file
# only).  Files come costliest first (tests/conftest.py weighs each test by the services it
# needs: real TAO, SLURM, Docker), so the four longest start side by side, one per worker; a
# worker takes the next file when its current one is nearly done, so the many small files fill
# in beside them.
# Four workers on two cores, on purpose (a TAO job is mostly single-threaded start-up, and the
# SLURM and Docker tests mostly wait), so torch's idle OpenMP threads must sleep, not spin (a
# 2-thread training step beside two busy processes: 745 ms spinning, 312 passive; `taomake
# run` hands it to TAO on CPU).  The slowest tests, the CPU of each test file and when each
# file ran are listed at the end.
export OMP_WAIT_POLICY=PASSIVE
exec "$PY" -m pytest -n "${TAOMAKE_TEST_WORKERS:-4}" --dist loadfile --no-loadscope-reorder \
  --durations=30 tests
