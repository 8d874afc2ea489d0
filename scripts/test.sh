#!/usr/bin/env bash
# The whole test suite with coverage, on a fresh machine: set up, then pytest on every core.
# Env: TALKINGFACE_TEST_WORKERS (default 2, the CI machine's cores; 0 runs in one process).
set -euo pipefail
cd "$(dirname "$0")/.."
TALKINGFACE_VENV="${TALKINGFACE_VENV:-.venv-test}" scripts/setup_env.sh test
scripts/setup_browser.sh
venv="${TALKINGFACE_VENV:-.venv-test}"
workers="${TALKINGFACE_TEST_WORKERS:-2}"
# One intra-op thread per worker: two workers with two threads each on two cores ran 1.7x slower.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
exec "$venv/bin/python" -m pytest -n "$workers" --durations=15 \
    --cov=talkingface --cov-report=term-missing:skip-covered "$@"
