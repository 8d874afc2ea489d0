"""GPEN's two custom operations in plain PyTorch: ``upfirdn2d`` (upsample, pad, FIR-filter, downsample) and the
fused bias + leaky ReLU + gain. The release ships them as compiled CUDA/C++ extensions (``face_model/op``) with a
native PyTorch path that runs on CPU; these are that path's arithmetic (docs/videoretalking.md, "GPEN-BFR-512").
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # 2 ** 0.5: keeps the second moment of a leaky-ReLU'd unit normal near 1


def make_kernel(taps: Sequence[float]) -> torch.Tensor:
    """A normalised 2-D FIR kernel (float32, sums to 1) from 1-D ``taps`` (outer product) or a 2-D list."""
    kernel = torch.tensor(taps, dtype=torch.float32)
    if kernel.ndim == 1:
        kernel = kernel[None, :] * kernel[:, None]
    return kernel / kernel.sum()


def conv_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """The correlation weight that applies ``kernel`` as a true convolution (both axes reversed), (1, 1, kh, kw)."""
    return torch.flip(kernel, [0, 1]).view(1, 1, *kernel.shape)


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample ``x`` (B, C, H, W) by inserting ``up - 1`` zeros after every pixel, pad both spatial axes by
    ``pad = (before, after)`` (negative values crop), convolve every channel with the 2-D ``kernel`` and keep every
    ``down``-th pixel. Output (B, C, (H·up + before + after − kh) // down + 1, same for W).

    The official native ``upfirdn2d``'s arithmetic (the same zero insertion, padding, flipped kernel and products),
    with two changes of form: the channels are filtered by one depthwise convolution (``groups=C``) instead of
    one single-channel convolution over B·C images (4–10× faster on CPU), and the decimation is the convolution's
    stride instead of a slice of the full result (the same sums)."""
    batch, channels, height, width = x.shape
    before, after = pad
    out = x
    if up > 1:
        out = out.reshape(batch, channels, height, 1, width, 1)
        out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])
        out = out.reshape(batch, channels, height * up, width * up)
    out = F.pad(out, [before, after, before, after])
    weight = conv_kernel(kernel).expand(channels, 1, *kernel.shape)
    return F.conv2d(out, weight, stride=down, groups=channels)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = LRELU_SLOPE,
                     scale: float = LRELU_GAIN) -> torch.Tensor:
    """``scale · leaky_relu(x + bias, negative_slope)`` with ``bias`` along dimension 1 (any number of dimensions)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return scale * F.leaky_relu(x + bias.view(shape), negative_slope=negative_slope)


class FusedLeakyReLU(nn.Module):
    """A learned per-channel bias, leaky ReLU (slope 0.2) and a gain of √2; state dict ``bias`` (channels,)."""

    def __init__(self, channels: int, negative_slope: float = LRELU_SLOPE, scale: float = LRELU_GAIN) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope, self.scale = negative_slope, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)
