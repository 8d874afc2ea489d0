"""Choosing the compute device."""
from __future__ import annotations

import os

import torch

from .errors import ConfigError


def resolve_device(spec: str | None = "auto") -> torch.device:
    """``auto`` -> the local rank's CUDA device when CUDA is available, else CPU; or an explicit name."""
    spec = (spec or "auto").lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ConfigError(f"device {spec!r} is not a valid torch device ({exc})") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} requested but CUDA is not available; use device=auto or cpu")
    return device
