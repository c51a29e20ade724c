#!/usr/bin/env bash
# Build the local test image taomake/tao-cpu-test:1 without any registry: a minimal rootfs
# (busybox + the host shared libraries that the TAO CPU venv and its Python need), imported
# with `docker import`.  The venv and its base Python are NOT in the image: the docker runner
# mounts them read-only (see the printed hardware.runner.docker settings).  Idempotent.
#
#   scripts/services/tao-cpu-image.sh [VENV]     (default: taomake's TAO CPU venv)
set -euo pipefail

IMAGE=${TAO_CPU_IMAGE:-taomake/tao-cpu-test:1}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "${PYTHON:-}" ] && [ -x "$REPO/.venv/bin/python" ]; then PYTHON=$REPO/.venv/bin/python; fi
PY=${PYTHON:-python}
VENV=${1:-$($PY -c 'from taomake.tao_cpu.setup import default_venv_path; print(default_venv_path())')}
[ -x "$VENV/bin/python" ] || { echo "tao-cpu-image.sh: no venv at $VENV (run: taomake setup tao-cpu)" >&2; exit 1; }
BASE=$(dirname "$(dirname "$(readlink -f "$VENV/bin/python")")")  # e.g. ~/.pyenv/versions/3.12.1

say() { echo "tao-cpu-image.sh: $*"; }
say "mounts for project.yaml: hardware.runner.docker.mounts: [$VENV:$VENV:ro, $BASE:$BASE:ro], tao_bin: $VENV/bin"

# The non-root user the docker end-to-end test runs snakemake as (TAOMAKE_CI_USER= skips it):
# in the docker group (socket access), and able to run this Python (an ancestor such as /root
# may be mode 700: it gets o+x, traverse only, no listing).
CI_USER=${TAOMAKE_CI_USER-taomake-ci}
if [ -n "$CI_USER" ]; then
  if ! id "$CI_USER" >/dev/null 2>&1; then
    useradd -m "$CI_USER"; say "created user $CI_USER"
  fi
  if ! id -nG "$CI_USER" | tr ' ' '\n' | grep -qx docker; then
    usermod -aG docker "$CI_USER"; say "added $CI_USER to group docker"
  fi
  # everything the test's `python -m snakemake` touches: the interpreter (venv link and its
  # target) and the taomake package
  paths=$($PY -c 'import os, sys, taomake, snakemake
for p in (sys.executable, os.path.realpath(sys.executable), taomake.__file__, snakemake.__file__):
    print(os.path.dirname(p))')
  for target in $paths; do
    d=""
    for part in $(echo "$target" | tr '/' ' '); do  # from the top down
      d="$d/$part"
      if ! runuser -u "$CI_USER" -- test -x "$d"; then
        chmod o+x "$d"; say "chmod o+x $d (so $CI_USER can run taomake with $PY)"
      fi
    done
  done
  exe=$($PY -c 'import sys; print(sys.executable)')
  runuser -u "$CI_USER" -- "$exe" -c 'import taomake, snakemake' \
    || { echo "tao-cpu-image.sh: $CI_USER cannot import taomake with $exe" >&2; exit 1; }
fi

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "image $IMAGE already exists, nothing to do"
  exit 0
fi

if [ ! -x /bin/busybox ]; then
  say "installing busybox-static"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >/dev/null \
    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static; }
fi

ROOT=$(mktemp -d /tmp/tao-cpu-rootfs.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
chmod 755 "$ROOT"
mkdir -p "$ROOT"/{bin,etc,tmp,root,home,proc,sys,dev,usr/bin,usr/lib,lib64}
chmod 1777 "$ROOT/tmp"
chmod 755 "$ROOT/root"   # the venv is mounted under /root: a non-root uid must traverse it
cp /bin/busybox "$ROOT/bin/busybox"
for tool in sh ls cat env true false sleep echo id mkdir rm; do ln -sf busybox "$ROOT/bin/$tool"; done

say "collecting the shared libraries of $BASE and $VENV"
libs=$(find "$VENV" "$BASE" -name '*.so*' -type f -print0 2>/dev/null \
        | xargs -0 -n 200 -P 2 ldd 2>/dev/null \
        | awk '/=> \// {print $3} /^\s*\/lib64\// {print $1}' | sort -u \
        | grep -v -e "^$VENV" -e "^$BASE" || true)
libs="$libs
$(ldd "$(readlink -f "$VENV/bin/python")" | awk '/=> \// {print $3}')
/lib64/ld-linux-x86-64.so.2"
n=0
for lib in $(echo "$libs" | sort -u); do
  [ -e "$lib" ] || continue
  for path in "$lib" "$(readlink -f "$lib")"; do
    mkdir -p "$ROOT$(dirname "$path")"
    cp -a "$path" "$ROOT$path"
  done
  n=$((n + 1))
done
# Debian's /lib is a symlink to /usr/lib: keep that layout
for d in lib; do
  if [ -L "/$d" ] && [ -d "$ROOT/$d" ] && [ ! -L "$ROOT/$d" ]; then
    cp -a "$ROOT/$d/." "$ROOT/usr/$d/"; rm -rf "${ROOT:?}/$d"; ln -s "usr/$d" "$ROOT/$d"
  fi
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ROOT/etc/group"
say "importing $n libraries + busybox as $IMAGE"
tar -C "$ROOT" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$IMAGE" >/dev/null
say "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes)"
