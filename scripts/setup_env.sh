#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install talkingface into it.
# Usage: scripts/setup_env.sh [extras]   e.g. scripts/setup_env.sh test
# Env: TALKINGFACE_VENV (default .venv), TALKINGFACE_TORCH (default torch==2.13.0; set to "torch"
# for your platform's newest build, or a CUDA wheel spec).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${TALKINGFACE_VENV:-.venv}"
torch_spec="${TALKINGFACE_TORCH:-torch==2.13.0}"
extras="${1:-}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating virtual environment $venv"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
# torch first and pinned, so that the dependency range in pyproject.toml (torch>=2.1) is already
# satisfied and pip does not pull a different (multi-GB) build.
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "[setup] installing $torch_spec"
    "${pip[@]}" "$torch_spec"
fi
target="."
[ -n "$extras" ] && target=".[$extras]"
echo "[setup] installing talkingface $target"
"${pip[@]}" -e "$target"
