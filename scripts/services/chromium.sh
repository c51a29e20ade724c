#!/usr/bin/env bash
# Install (if missing) Debian's Chromium and ChromeDriver, which tests/func/test_installed.py uses to
# open `snakemake --report` pages headless.  Idempotent; run as root.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "chromium.sh: run as root" >&2; exit 1
fi
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium.sh: present ($(chromium --version 2>/dev/null | head -1))"
  exit 0
fi
echo "chromium.sh: installing chromium chromium-driver"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q chromium chromium-driver
