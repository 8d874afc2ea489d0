#!/usr/bin/env bash
# The main job on the embedded demo data, on a fresh machine: set up, then DINet's demo recipe
# (configs/model/dinet/demo.yaml): synthesize and preprocess the demo clips -> train DINet's frame stage
# at mouth 64 -> dub the test clip with its own and with shifted audio -> evaluate -> results table.
# About 8.5 minutes on 2 CPU cores after set-up (docs/dinet_demo.md: mouth_sync 0.65, control -0.22).
# Extra arguments are passed on.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
venv="${TALKINGFACE_VENV:-.venv}"
exec "$venv/bin/python" run_talkingface.py --model=dinet --dataset=demo "$@"
