"""Reading checkpoints safely and loading state dicts strictly with a readable mismatch report."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .errors import CheckpointError
from .optional import require

CHECKPOINT_FORMAT = "talkingface"
CHECKPOINT_VERSION = 1


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a ``.pth``/``.pt``/``.ckpt`` file with ``weights_only=True`` or a ``.safetensors`` file.

    Raises CheckpointError naming the file when it is missing, truncated, or contains pickled code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        load_file = require("safetensors.torch", f"reading {path}", package="safetensors").load_file
        try:
            return load_file(str(path), device=str(map_location))
        except Exception as exc:
            raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from exc
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        # weights_only refuses arbitrary classes: that is the point, so say why it failed.
        raise CheckpointError(f"{path}: cannot be read as a weights-only checkpoint ({exc})") from exc


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key that has it (``module.`` from DataParallel checkpoints)."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}


def add_missing_batchnorm_counters(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add BatchNorm's ``num_batches_tracked`` (as 0) where a release saved before PyTorch 0.4.1 lacks it.

    The counters do not affect eval-mode outputs; adding them lets a strict load check every real tensor.
    """
    state = dict(state_dict)
    for key in [k for k in state if k.endswith(".running_mean")]:
        state.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.zeros((), dtype=torch.long))
    return state


def state_dict_mismatch(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str:
    """A description of missing keys, unexpected keys and shape mismatches ('' when they match)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if hasattr(state_dict[k], "shape") and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]

    def listing(title: str, items: list[str]) -> str:
        shown = ", ".join(items[:10]) + (f", ... ({len(items) - 10} more)" if len(items) > 10 else "")
        return f"{title} ({len(items)}): {shown}"

    parts = [listing(t, i) for t, i in (("missing keys", missing), ("unexpected keys", unexpected),
                                         ("shape mismatches", shapes)) if i]
    return "; ".join(parts)


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``module``; any mismatch raises CheckpointError naming ``source``."""
    problem = state_dict_mismatch(module, state_dict)
    if problem:
        raise CheckpointError(f"{source} does not match {type(module).__name__}: {problem}")
    module.load_state_dict(state_dict, strict=True)


def is_native_checkpoint(obj: Any) -> bool:
    """Whether ``obj`` is a checkpoint written by this toolkit's trainer or ``save_weights``."""
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT
