#!/usr/bin/env bash
# The main job on the embedded default (no Docker, no GPU): set up, fetch MNIST, train a
# conditional DCGAN on the CPU (4 epochs, about 4 minutes on 2 cores), evaluate it, export and
# publish it to the local registry (./registry), promoted to production if it passes the quality
# gate; then start the API on it, ask it for digits over HTTP, and print the gallery URL.
# In a terminal the API keeps running until Ctrl-C; otherwise it is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate

RUN=${RUN:-runs/demo}
EPOCHS=${EPOCHS:-4}  # the default recipe first passes the quality gate at epoch 4 (measured)
PORT=${DCGAN_SERVE_PORT:-8000}
export DCGAN_REGISTRY_URI=${DCGAN_REGISTRY_URI:-registry}
export DCGAN_SERVE_PORT=$PORT
URL="http://127.0.0.1:$PORT"

dcgan train --out "$RUN" --epochs "$EPOCHS"
dcgan evaluate "$RUN"
dcgan publish "$RUN" --promote
dcgan models list
echo
echo "sample grid (one row per digit): $RUN/samples.png"

mkdir -p runs
dcgan serve >runs/serve.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { echo "the API exited; see runs/serve.log" >&2; exit 1; }
  sleep 0.5
done
curl -fsS "$URL/readyz" >/dev/null || {
  echo "the API is not ready (no production model?): $(curl -sS "$URL/readyz")" >&2
  exit 1
}
echo
echo "\$ curl -s -X POST $URL/generate -d '{\"seed\": 7, \"batch_size\": 3, \"digits\": 3}'"
curl -sS -X POST "$URL/generate" -H 'Content-Type: application/json' \
  -d '{"seed": 7, "batch_size": 3, "digits": 3}' | cut -c1-300
echo " ..."
dcgan generate --digit 3 -n 100 --seed 7 -o runs/threes.npz --url "$URL"
curl -fsS "$URL/generate?seed=7&batch_size=30&format=png" -o runs/generated.png
echo "a grid of 30 generated digits: runs/generated.png"
echo
echo "gallery: $URL/   API docs: $URL/docs   metrics: $URL/metrics"
if [ -t 0 ]; then
  echo "serving until Ctrl-C (log: runs/serve.log)"
  wait $SERVER
fi
