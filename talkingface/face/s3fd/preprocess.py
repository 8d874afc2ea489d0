"""S3FD input preparation: cv2-style INTER_LINEAR rescale of a uint8 RGB frame, then RGB minus (123, 117, 104)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# syncnet_python's img_mean is (104, 117, 123) in BGR order; it swaps RGB->BGR, subtracts, and swaps back,
# so the network sees RGB minus (123, 117, 104).
RGB_MEAN = (123.0, 117.0, 104.0)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """cv2.resize(dsize=(0, 0), fx=fy=scale) output size: each side rounded half-to-even (cvRound)."""
    return round(height * scale), round(width * scale)


def resize_linear(images: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, 3, H, W) uint8-valued float32 -> rescaled by ``scale`` and rounded to integers like cv2's uint8 output.

    cv2 maps output pixel d to source (d + 0.5) / scale - 0.5 and clamps at the borders; F.interpolate with
    ``scale_factor`` and ``recompute_scale_factor=False`` uses the same map. cv2 rounds the output size where
    interpolate floors it, so the frame is edge-replicated on the right/bottom first (replicated pixels are what
    cv2's border clamp reads) and cropped to cv2's size. Rounding is half-up (cv2 uses 11-bit fixed-point weights).
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    out_h, out_w = scaled_size(images.shape[2], images.shape[3], scale)
    if scale == 1.0:
        return images.clone()
    pad = math.ceil(1.0 / scale) + 1
    padded = F.pad(images, (0, pad, 0, pad), mode="replicate")
    resized = F.interpolate(padded, scale_factor=scale, mode="bilinear", align_corners=False, antialias=False,
                            recompute_scale_factor=False)
    return torch.floor(resized[:, :, :out_h, :out_w] + 0.5).clamp_(0, 255)


def prepare(frames: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB frames (any device) -> (B, 3, h, w) float32 network input at ``scale``."""
    images = frames.permute(0, 3, 1, 2).to(torch.float32)
    images = resize_linear(images, scale)
    mean = torch.tensor(RGB_MEAN, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images - mean).contiguous()  # NCHW: channels-last strides make CPU convs batch-dependent
