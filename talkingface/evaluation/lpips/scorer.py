"""``LPIPS``: per-frame LPIPS v0.1 distances of uint8 RGB frame pairs, as ``lpips.LPIPS`` computes them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import CheckpointError
from ...device import resolve_device
from .network import BACKBONES, LPIPSNetwork
from .weights import BACKBONE_WEIGHTS, HEAD_WEIGHTS, load_lpips_network, resolve_head_path

# Smallest frame side each backbone accepts (its pools would otherwise reach an empty map).
MIN_SIZE = {"alex": 31, "vgg": 16, "squeeze": 17}


def to_network_input(frames: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float32 in [-1, 1]: ``x / 255``, then the package's
    ``normalize=True`` step ``2x - 1`` (= ``x / 127.5 - 1`` up to float rounding)."""
    return 2.0 * (frames.permute(0, 3, 1, 2).float() / 255.0) - 1.0


def _as_frames(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))  # torch refuses negative strides
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) uint8 RGB frames, got {tuple(frames.shape)} {frames.dtype}")
    return frames


class LPIPS:
    """Callable: two ``(N, H, W, 3)`` uint8 RGB arrays -> ``(N,)`` float64 LPIPS distances.

    ``net`` is ``alex`` (default), ``vgg`` or ``squeeze``; version 0.1. ``backbone_weights`` defaults to
    ``checkpoints/<torchvision file>``, ``head_weights`` to ``checkpoints/lpips_v0.1_<net>.pth`` or an
    installed ``lpips`` package's copy. Both files are SHA-256 checked unless ``check_sha256=False``
    (tests with random weights only). Runs in eval mode under ``torch.no_grad``, ``batch_size`` pairs
    at a time, on ``device`` (None: CUDA when available).
    """

    def __init__(self, net: str = "alex", backbone_weights: str | Path | None = None,
                 head_weights: str | Path | None = None, device: str | torch.device | None = None,
                 batch_size: int = 32, check_sha256: bool = True):
        if net not in BACKBONES:
            raise ValueError(f"unknown LPIPS net {net!r}; choose one of {sorted(BACKBONES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        backbone_weights = Path(backbone_weights or BACKBONE_WEIGHTS[net].default_path())
        head_weights = resolve_head_path(net, head_weights)
        for known, path in ((BACKBONE_WEIGHTS[net], backbone_weights), (HEAD_WEIGHTS[net], head_weights)):
            reason = known.missing_reason(path)
            if reason:
                raise CheckpointError(reason)
        self.net = net
        self.batch_size = batch_size
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.network: LPIPSNetwork = load_lpips_network(net, backbone_weights, head_weights,
                                                        verify=check_sha256).to(self.device)

    @torch.no_grad()
    def __call__(self, frames_a: np.ndarray | torch.Tensor, frames_b: np.ndarray | torch.Tensor) -> np.ndarray:
        a, b = _as_frames(frames_a), _as_frames(frames_b)
        if a.shape != b.shape:
            raise ValueError(f"LPIPS needs frames of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        if min(a.shape[1:3]) < MIN_SIZE[self.net]:
            raise ValueError(f"LPIPS net={self.net} needs frames of at least {MIN_SIZE[self.net]} px per side, "
                             f"got {tuple(a.shape[1:3])}")
        distances = [
            self.network(to_network_input(a[i:i + self.batch_size].to(self.device)),
                         to_network_input(b[i:i + self.batch_size].to(self.device))).double().cpu()
            for i in range(0, len(a), self.batch_size)
        ]
        return torch.cat(distances).numpy() if distances else np.zeros(0)
