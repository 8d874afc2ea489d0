"""Helpers for tests that run the CLI in child processes."""
from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from conftest import REPO, subprocess_env


def cli_tokens(overrides: dict, prefix: str = "") -> list[str]:
    """``{"train": {"max_steps": 3}}`` -> ``["--train.max_steps=3"]`` (values as JSON, which is YAML)."""
    tokens = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            tokens += cli_tokens(value, f"{prefix}{key}.")
        else:
            tokens.append(f"--{prefix}{key}={json.dumps(value)}")
    return tokens


def run_cli(args: list[str], timeout: int = 300, module: str | None = None,
            threads: int | None = None) -> subprocess.CompletedProcess:
    """Run ``run_talkingface.py`` (or ``python -m module``) with ``args``; capture text output."""
    head = ["-m", module] if module else [str(REPO / "run_talkingface.py")]
    return subprocess.run([sys.executable, *head, *args], capture_output=True, text=True, timeout=timeout,
                          env=subprocess_env(threads), cwd=REPO)


def only_run_dir(saved: Path) -> Path:
    runs = sorted(p for p in saved.iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def random_syncnet(path: Path, seed: int = 0) -> Path:
    """A randomly initialised ``syncnet_v2`` in the release layout with non-trivial BatchNorm statistics,
    saved at ``path`` (so that a wrong BatchNorm mode or folding would show)."""
    from talkingface.evaluation.syncnet import SyncNet

    torch.manual_seed(seed)
    net = SyncNet()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    torch.save(net.state_dict(), path)
    return path


@contextmanager
def torch_threads(count: int):
    """torch's intra-op threads set to ``count`` inside the block, restored after it (tests/conftest.py fails a test
    that leaves them changed)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
