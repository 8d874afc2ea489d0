"""Shared fixtures: the example plugin on sys.path, and tiny configs writing into tmp folders."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = REPO / "examples" / "example_plugin"
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"
for path in (EXAMPLE_PLUGIN, TEST_PLUGINS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import talkingface_example  # noqa: E402,F401  (registers the example model and dataset)

if os.environ.get("TALKINGFACE_TEST_MKLDNN") == "0":  # one of the kernel sets of scripts/test_kernels.sh
    torch.backends.mkldnn.enabled = False

SESSION_THREADS = torch.get_num_threads()  # what the environment asked for (OMP_NUM_THREADS): every test keeps it


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Fail the test after which torch's intra-op thread count differs from the session's: a test or fixture that
    changes it must restore it (``one_thread``), or every test after it runs with the wrong threads (the kernel
    sets of scripts/test_kernels.sh name their thread count)."""
    yield
    threads = torch.get_num_threads()
    if threads != SESSION_THREADS:
        torch.set_num_threads(SESSION_THREADS)
        pytest.fail(f"{item.nodeid} left torch.get_num_threads() = {threads} (the session runs with "
                    f"{SESSION_THREADS}): change threads inside one_thread / torch_threads", pytrace=False)


def pytest_terminal_summary(terminalreporter):
    """Under scripts/test_kernels.sh: the kernels this run computed with (tests/test_kernel_set.py checks them)."""
    name = os.environ.get("TALKINGFACE_KERNEL_SET")
    if name:
        terminalreporter.write_line(
            f"[kernels] {name}: {torch.get_num_threads()} thread(s) per process, ATen "
            f"{torch.backends.cpu.get_cpu_capability()}, oneDNN {'on' if torch.backends.mkldnn.enabled else 'off'}")


@pytest.fixture
def one_thread():
    """One intra-op thread for this test (bit-for-bit comparisons of optimisations), restored afterwards."""
    from helpers import torch_threads

    with torch_threads(1):
        yield

TINY_EXAMPLE = {"example_shapes": {"clips": 5, "seconds": 0.48, "size": 32, "val_clips": 1, "test_clips": 1},
                "example_inpainter": {"channels": 8}}


def tiny_overrides(tmp: Path, example: bool = True, **extra) -> dict:
    """Config overrides that keep a run small and inside ``tmp`` (with the example plugin's tiny sizes
    unless ``example`` is False)."""
    config = {"saved_dir": str(tmp / "saved"), "progress": False, "plugins": ["talkingface_example"],
              "data": {"processed_dir": str(tmp / "processed"), "root": str(tmp / "raw")},
              "train": {"batch_size": 4, "log_every_steps": 1},
              "evaluate": {"syncnet_weights": str(tmp / "no-weights" / "syncnet_v2.model"),
                           "inception_weights": str(tmp / "no-weights" / "pt_inception-2015-12-05-6726825d.pth")},
              **(TINY_EXAMPLE if example else {})}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def subprocess_env(threads: int | None = None) -> dict:
    """Environment for child processes: the example and test plugins importable.

    ``threads`` caps intra-op threads; leave it unset when results are compared bit for bit with
    this process (a different thread count changes float reduction order).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE_PLUGIN), str(TEST_PLUGINS), str(REPO),
                                         env.get("PYTHONPATH", "")])
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


@pytest.fixture
def tiny(tmp_path: Path):
    """A factory of tiny config dicts rooted in this test's tmp folder."""
    return lambda example=True, **extra: tiny_overrides(tmp_path, example, **extra)
