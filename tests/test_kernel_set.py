"""The kernel set a run names is the one it runs with (scripts/test_kernels.sh, docs/testing.md).

Each set of ``scripts/test_kernels.sh`` names its intra-op threads (``OMP_NUM_THREADS``), ATen's SIMD level
(``ATEN_CPU_CAPABILITY``) and whether oneDNN is on (``TALKINGFACE_TEST_MKLDNN``); this test, marked ``numerics`` so
that it runs in every set, fails when the process runs with anything else. ``tests/conftest.py`` fails any test
that leaves the thread count changed, so what holds here holds for every test of the run (a test that set one thread
and never restored it once made the "2 threads" set run single-threaded).
"""
from __future__ import annotations

import os

import pytest
import torch

CAPABILITIES = {"default": "DEFAULT", "avx2": "AVX2", "avx512": "AVX512"}


def kernel_state() -> dict:
    """What this process computes with: threads, ATen's capability, oneDNN on or off."""
    return {"threads": torch.get_num_threads(), "capability": torch.backends.cpu.get_cpu_capability(),
            "onednn": bool(torch.backends.mkldnn.enabled)}


@pytest.mark.numerics
def test_the_process_runs_with_the_named_kernels():
    state = kernel_state()
    if os.environ.get("OMP_NUM_THREADS"):
        assert state["threads"] == int(os.environ["OMP_NUM_THREADS"]), state
    named = os.environ.get("ATEN_CPU_CAPABILITY")
    if named:
        assert state["capability"] == CAPABILITIES[named], state
    assert state["onednn"] == (os.environ.get("TALKINGFACE_TEST_MKLDNN") != "0"), state
    if os.environ.get("TALKINGFACE_KERNEL_SET"):  # the matrix names every setting explicitly
        assert os.environ.get("OMP_NUM_THREADS"), "a kernel set must name its thread count"
