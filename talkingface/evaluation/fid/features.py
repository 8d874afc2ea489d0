"""Inception pool3 features of uint8 RGB frames, preprocessed as pytorch-fid does."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import CheckpointError
from ...checkpoint import add_missing_batchnorm_counters, load_state_dict_strict, read_checkpoint
from ...device import resolve_device
from .inception import FIDInceptionV3

CLASSIFIER_KEYS = ("fc.weight", "fc.bias")  # the 1008-class TF classifier; FID stops before it
FEATURE_DIM = 2048
INPUT_SIZE = 299


def fid_inception_state_dict(checkpoint: Any, source: str) -> dict[str, torch.Tensor]:
    """The released pytorch-fid state dict without its classifier, ready for ``FIDInceptionV3``.

    Exactly ``fc.weight`` and ``fc.bias`` are dropped; every other key must match the model.
    A file saved before PyTorch tracked ``num_batches_tracked`` gets those buffers as zeros, as
    ``BatchNorm2d`` itself does when loading such files (they do not affect eval-mode outputs).
    """
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor)
                                                      for v in checkpoint.values()):
        raise CheckpointError(f"{source} is not a state dict of tensors")
    return add_missing_batchnorm_counters({k: v for k, v in checkpoint.items() if k not in CLASSIFIER_KEYS})


def load_fid_inception(weights: str | Path) -> FIDInceptionV3:
    """``FIDInceptionV3`` in eval mode with ``weights`` loaded strictly (CheckpointError names bad keys)."""
    network = FIDInceptionV3()
    state = fid_inception_state_dict(read_checkpoint(weights), str(weights))
    load_state_dict_strict(network, state, str(weights))
    return network.eval()


def to_network_input(frames: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 -> ``(B, 3, 299, 299)`` float in [-1, 1].

    pytorch-fid's order: scale to [0, 1], bilinear resize (``align_corners=False``, no antialias),
    then ``2x - 1``.
    """
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return 2.0 * x - 1.0


class InceptionFeatures:
    """Callable: ``(N, H, W, 3)`` uint8 RGB (numpy or torch) -> ``(N, 2048)`` float64 numpy features."""

    def __init__(self, weights: str | Path, device: str | torch.device | None = None, batch_size: int = 50):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.batch_size = batch_size
        self.network = load_fid_inception(weights).to(self.device)

    @torch.no_grad()
    def __call__(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(frames, np.ndarray):
            # torch refuses negative strides, which slices such as frames[::-1] have
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) uint8 RGB frames, "
                             f"got {tuple(frames.shape)} {frames.dtype}")
        batches = [
            self.network(to_network_input(frames[i:i + self.batch_size].to(self.device))).double().cpu()
            for i in range(0, len(frames), self.batch_size)
        ]
        if not batches:
            return np.zeros((0, FEATURE_DIM))
        return torch.cat(batches).numpy()
