#!/usr/bin/env bash
# Debian's chromium, for the test that renders /docs and the gallery in a real headless browser
# (tests/serving/test_browser.py): where none is on PATH, install it with apt-get.
# For CI and throwaway test machines: it needs root and apt-get. On a workstation, install it your
# usual way instead; without one that test is skipped, and says why.
# Exit 0 with chromium on PATH; 1 (and why, on stderr) otherwise.
set -euo pipefail

if command -v chromium >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "chromium: not installed, and installing it needs root and apt-get" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
