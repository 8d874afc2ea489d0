"""The restore step ``GFPGANer.enhance`` runs on each aligned face, as arithmetic the same on every CPU:

- in: ``face / 255.`` (float64), rounded to float32, BGR -> RGB, ``(x - 0.5) / 0.5`` in float32 (basicsr's
  ``img2tensor(..., bgr2rgb=True, float32=True)`` then torchvision's ``normalize`` with (0.5, 0.5, 0.5) twice);
- the network: ``net(x, return_rgb=False)[0]`` (TencentARC's later GFPGANer also passes ``weight=0.5``, which
  ``GFPGANv1Clean`` ignores);
- out: basicsr's ``tensor2img(out, rgb2bgr=True, min_max=(-1, 1))``: cast to float32, clamp to [-1, 1],
  ``(x + 1) / 2``, RGB -> BGR, ``round(x · 255)`` (half to even) as uint8.

``GFPGANer.enhance(has_aligned=True)`` first resizes the face to 512×512 with OpenCV (nothing for a 512 face);
here the face must already have the network's size. Where the network raises a ``RuntimeError`` (e.g. out of
memory) the release prints it and keeps the unrestored face; here the error propagates.
"""
from __future__ import annotations

import numpy as np
import torch

from ...errors import DataError
from ..stylegan2_clean import Noise
from .network import GFPGANv1Clean


def _faces(faces: np.ndarray, size: int) -> np.ndarray:
    faces = np.asarray(faces)
    batch = faces if faces.ndim == 4 else faces[None]
    if batch.ndim != 4 or batch.shape[1:] != (size, size, 3) or batch.dtype != np.uint8 or len(batch) == 0:
        raise DataError(f"GFPGAN expects aligned uint8 BGR faces of ({size}, {size}, 3) or (N, {size}, {size}, 3), "
                        f"got {faces.dtype} {faces.shape}")
    return batch


def faces_to_input(faces: np.ndarray, size: int = 512) -> torch.Tensor:
    """uint8 BGR faces ``(S, S, 3)`` or ``(N, S, S, 3)`` -> the network's float32 input ``(N, 3, S, S)``, RGB in
    [-1, 1]."""
    batch = _faces(faces, size)
    scaled = (batch / 255.0).astype(np.float32)[..., ::-1]  # float64 division, rounded; BGR -> RGB
    x = torch.from_numpy(np.ascontiguousarray(scaled.transpose(0, 3, 1, 2)))
    return (x - 0.5) / 0.5


def output_to_faces(out: torch.Tensor) -> np.ndarray:
    """The network's ``(N, 3, S, S)`` output (RGB, about [-1, 1]) -> uint8 BGR faces ``(N, S, S, 3)``."""
    x = out.detach().float().cpu().clamp(-1, 1)
    x = ((x - (-1)) / 2).numpy().transpose(0, 2, 3, 1)[..., ::-1]
    return (x * np.float32(255.0)).round().astype(np.uint8)


def restore_faces(net: GFPGANv1Clean, faces: np.ndarray, noise: Noise = None) -> np.ndarray:
    """Restore aligned uint8 BGR faces (``(S, S, 3)`` or ``(N, S, S, 3)``, ``S = net.out_size``: 512 for
    GFPGANv1.3) as ``GFPGANer.enhance`` does; returns the same shape. Runs in the network's dtype and device,
    without gradients (the network has no training-mode behaviour).

    ``noise``: the decoder's noise (None: ``net.noise``). With random noise, a batch of N faces draws each noise
    image once for all N (``(N, 1, H, W)``), so its numbers differ from N calls of one face (as in the release,
    which restores the faces of a frame one at a time)."""
    parameter = next(net.parameters())
    x = faces_to_input(faces, net.out_size).to(parameter.device, parameter.dtype)
    with torch.no_grad():
        out = net(x, return_rgb=False, noise=noise)[0]
    restored = output_to_faces(out)
    return restored if np.asarray(faces).ndim == 4 else restored[0]
