#!/usr/bin/env bash
# Install (if missing) and start (if not running) a Docker engine on a fresh Debian 12 machine.
# Idempotent; run as root.  apt does not start services here (policy-rc.d), so dockerd is
# started by hand with setsid and polled until it answers.
set -euo pipefail

LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
TIMEOUT=${DOCKERD_TIMEOUT:-60}

if [ "$(id -u)" != 0 ]; then
  echo "docker.sh: run as root" >&2; exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "docker.sh: installing docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q docker.io
else
  echo "docker.sh: dockerd present ($(command -v dockerd))"
fi

if docker info >/dev/null 2>&1; then
  echo "docker.sh: daemon already running"
  exit 0
fi

echo "docker.sh: starting dockerd (log: $LOG)"
setsid dockerd --storage-driver overlay2 >>"$LOG" 2>&1 </dev/null &
for _ in $(seq 1 "$TIMEOUT"); do
  if docker info >/dev/null 2>&1; then
    echo "docker.sh: daemon ready"
    exit 0
  fi
  sleep 1
done
echo "docker.sh: dockerd did not answer within ${TIMEOUT}s; last lines of $LOG:" >&2
tail -n 20 "$LOG" >&2 || true
exit 1
