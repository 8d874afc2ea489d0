#!/usr/bin/env bash
# The main job on the embedded demo data, on a fresh machine: set up, then preprocess -> train ->
# evaluate -> results table. Until the built-in demo dataset and DINet land, the demo runs the
# example plugin (examples/example_plugin), installed as a separate package exactly as a
# third-party plugin would be: it is discovered through the `talkingface.plugins` entry point.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
venv="${TALKINGFACE_VENV:-.venv}"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps examples/example_plugin
exec "$venv/bin/python" run_talkingface.py --model=example_inpainter --dataset=example_shapes "$@"
