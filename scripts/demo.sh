#!/usr/bin/env bash
# The main job on the embedded default (no Docker, no GPU): set up, fetch MNIST, train a
# conditional DCGAN briefly on the CPU, evaluate it, and show where the samples are.
# Later stages (publish, serve, generate) join this script as they are built.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate

RUN=${RUN:-runs/demo}
EPOCHS=${EPOCHS:-3}
LIMIT=${LIMIT:-30000}

dcgan train --out "$RUN" --epochs "$EPOCHS" --limit "$LIMIT"
dcgan evaluate "$RUN" --out "$RUN/evaluation.json"
echo
echo "sample grid (one row per digit): $RUN/samples.png"
