"""Seeding and capturing/restoring every random number generator (for exact resume)."""
from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict:
    """Every global RNG state, as tensors and plain lists (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of ``capture_rng_state``."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Seed every global RNG with ``seed`` inside the block and restore the outer states after."""
    outer_np, outer_py = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        seed_everything(seed)
        try:
            yield
        finally:
            np.random.set_state(outer_np)
            random.setstate(outer_py)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed unique to (seed, epoch, index)."""
    value = (seed * 1_000_003 + epoch) * 2_147_483_647 + index
    return (value * 6364136223846793005 + 1442695040888963407) % (2**63)


def item_generator(seed: int | None, epoch: int, index: int) -> np.random.Generator:
    """Dataset item ``index``'s generator in ``epoch``: seeded by ``sample_seed(seed, epoch, index)`` (the same draws
    in every worker and on resume), or fresh from numpy's global generator when ``seed`` is None."""
    if seed is None:
        return np.random.default_rng(int(np.random.randint(0, 2**62, dtype=np.int64)))
    return np.random.default_rng(sample_seed(int(seed), int(epoch), int(index)))
