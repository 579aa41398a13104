#!/usr/bin/env bash
# The test command: set up (idempotent), then run the whole suite. Extra args go to pytest.
# Two pytest-xdist workers (DCGAN_TEST_WORKERS): most of the long tests wait on servers,
# containers and subprocesses, so two run in about 70% of the time one does on 2 cores.
# worksteal: a worker that runs out of tests takes queued ones from the other, so a long test
# (the compose stack) does not hold tests queued behind it while the other worker sits idle.
# --fast: only the tests that need no server process, container, Java or real training (the
# tiers of tests/conftest.py): the check to run before a commit.
set -euo pipefail
cd "$(dirname "$0")/.."
tier=()
if [[ "${1:-}" == "--fast" ]]; then
    shift
    tier=(-m "not (slow or server or container or java or training)")
fi
scripts/setup.sh
. .venv/bin/activate
ruff check .
mypy models pipeline serving benchmarks
exec python -m pytest -n "${DCGAN_TEST_WORKERS:-2}" --dist worksteal "${tier[@]}" "$@"
