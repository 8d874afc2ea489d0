#!/usr/bin/env bash
# The CPU-sensitive tests (marker `numerics`) under other kernel sets than this CPU's best, so that a
# tolerance tuned to one machine shows up here and not on a user's (docs/testing.md).
# Usage: scripts/test_kernels.sh [pytest args]   (run after scripts/test.sh has made the venv)
set -euo pipefail
cd "$(dirname "$0")/.."
python="${TALKINGFACE_VENV:-.venv-test}/bin/python"
# scripts/test.sh already ran everything with this CPU's kernels on one thread per worker.
one="OMP_NUM_THREADS=1 MKL_NUM_THREADS=1"
kernel_sets=(
    "native-2-threads:OMP_NUM_THREADS=2 MKL_NUM_THREADS=2:-n 0"
    "avx2:ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 $one:-n 2"
    "sse4:ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2 $one:-n 2"
    "no-onednn:TALKINGFACE_TEST_MKLDNN=0 $one:-n 2"
)
# tests/test_kernel_set.py fails a set whose processes run with other threads, ATen capability or oneDNN state than
# it names, and every run prints the kernels it used ("[kernels] NAME: ..."); tests/conftest.py fails a test that
# leaves the thread count changed.
status=0
for entry in "${kernel_sets[@]}"; do
    IFS=: read -r name settings workers <<< "$entry"
    echo "[kernels] $name: $settings"
    if ! env TALKINGFACE_KERNEL_SET="$name" $settings "$python" -m pytest -q -p no:cacheprovider $workers -m numerics "$@"; then
        echo "[kernels] FAILED under $name"
        status=1
    fi
done
exit $status
