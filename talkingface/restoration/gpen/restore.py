"""What GPEN's ``FaceGAN.process`` does around the generator, for an aligned face crop: BGR uint8 → RGB in [-1, 1]
→ ``FullGenerator`` → BGR uint8, the conversions in the release's arithmetic (``img2tensor`` / ``tensor2img``)."""
from __future__ import annotations

import numpy as np
import torch

from ...errors import DataError
from .network import FullGenerator


def _bgr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Reverse the channel axis (dimension 1) of (B, 3, H, W)."""
    return x.flip(1)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """float32 in [0, 255] to uint8 by truncation (NumPy's ``astype``), as the release's ``tensor2img``."""
    return x.astype(np.uint8)


def faces_to_input(faces: np.ndarray, dtype: torch.dtype = torch.float32,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """(B, H, W, 3) or (H, W, 3) uint8 BGR → (B, 3, H, W) RGB in [-1, 1]: ``x / 255.`` in float32, then
    ``(x − 0.5) / 0.5`` (both in float32, as the release's ``img2tensor``), then cast to ``dtype``."""
    faces = np.asarray(faces)
    if faces.dtype != np.uint8 or faces.ndim not in (3, 4) or faces.shape[-1] != 3:
        raise DataError(f"GPEN expects uint8 BGR faces (H, W, 3) or (B, H, W, 3), got {faces.dtype} "
                        f"{faces.shape}")
    batch = torch.from_numpy(np.ascontiguousarray(faces.reshape((-1,) + faces.shape[-3:]))).to(device)
    x = (batch / 255.0 - 0.5) / 0.5
    return _bgr_to_rgb(x.permute(0, 3, 1, 2)).to(dtype)


def output_to_faces(out: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) RGB in [-1, 1] → (B, H, W, 3) uint8 BGR: ``x · 0.5 + 0.5`` in the output's dtype, then float32,
    clipped to [0, 1], ×255 and truncated (the release's ``tensor2img``; no rounding)."""
    x = _bgr_to_rgb(out * 0.5 + 0.5).permute(0, 2, 3, 1)
    return _to_uint8(np.clip(x.detach().float().cpu().numpy(), 0, 1) * 255.0)


def restore_faces(generator: FullGenerator, faces: np.ndarray) -> np.ndarray:
    """Restore aligned face crops with GPEN: ``faces`` (H, W, 3) or (B, H, W, 3) uint8 BGR at the generator's size
    (GPEN's enhancer warps each face to that size first; ``FaceGAN.process``'s resize is then the identity and is
    not repeated here), the result in the same shape. Runs in the generator's dtype and device, without gradients;
    batches give each face's own result (the modulated convs are grouped per sample)."""
    faces = np.asarray(faces)
    size = generator.size
    if faces.ndim in (3, 4) and faces.shape[-3:-1] != (size, size):
        raise DataError(f"GPEN at {size} expects {size}×{size} aligned faces, got {faces.shape[-3]}×"
                        f"{faces.shape[-2]} (warp the face to the generator's size first)")
    parameter = next(generator.parameters())
    x = faces_to_input(faces, parameter.dtype, parameter.device)
    with torch.no_grad():
        restored = output_to_faces(generator(x))
    return restored[0] if faces.ndim == 3 else restored
