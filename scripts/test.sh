#!/usr/bin/env bash
# The whole test suite with coverage, on a fresh machine: set up, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
TALKINGFACE_VENV="${TALKINGFACE_VENV:-.venv-test}" scripts/setup_env.sh test
venv="${TALKINGFACE_VENV:-.venv-test}"
exec "$venv/bin/python" -m pytest --cov=talkingface --cov-report=term-missing:skip-covered "$@"
