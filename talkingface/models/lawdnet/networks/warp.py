"""LawDNet's local affine warping layer (``LocalAffineWarp``), with the release's numerics.

Per feature channel c and keypoint n (5 of them) the code predicts a keypoint ``kp``, a radius ``r`` and a
similarity ``(s, a, tx, ty)``. On a coarse 60×60 grid of points ``g`` (pixel centres, ``(x, y)`` order) the
offset ``o = g - kp`` gets the weight ``w = exp(-|o| / r)`` and moves to
``((s + 1) w + (1 - w)) · R(π a w) o + (tx, ty) w + kp``; keypoints are blended with ``softmax(w)`` over n.
The coarse grid is resized to the feature map (bilinear, as torchvision's ``Resize``), a depth coordinate
per channel is added, and a 5-D ``grid_sample`` warps every channel with its own grid.

Quirk kept for the released weights: the coarse grid goes ``transpose(-1, -2) -> permute(0, 1, 4, 2, 3)
-> view(B, 2C, 60, 60)``, which mixes up the x/y components and the spatial layout (an identity warp
does not give an identity grid). ``scrambled_grid=False`` uses the intended layout, for new training only.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ....device import at_least_fp32, autocast_off


CPU_CHANNEL_CHUNK = 8


def centres(size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``linspace(-1 + 1/size, 1 - 1/size, size)`` rounded once from float64: the same on every CPU. (PyTorch's
    float32 ``linspace`` is not: its AVX2 kernel adds the step twice, e.g. 20 of 60 values differ by 1 ulp.)"""
    return torch.linspace(-1 + 1 / size, 1 - 1 / size, size, dtype=torch.float64).to(dtype)


def standard_grid(size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(size, size, 2)`` pixel-centre coordinates in [-1, 1], ``(x, y)`` order (``torch_affine_ops``)."""
    axis = centres(size, dtype)
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([cols, rows], dim=-1)


def resize_like_torchvision(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``torchvision.transforms.Resize(size)`` on a float tensor (torchvision >= 0.17): bilinear, half-pixel
    centres, antialiased when shrinking."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


class LocalAffineWarp(nn.Module):
    """``(B, C, H, W)`` features and a ``(B, para_ch)`` code -> the features warped channel by channel."""

    def __init__(self, para_ch: int = 256, num_kpoints: int = 5, feature_ch: int = 256, grid_size: int = 60,
                 scrambled_grid: bool = True):
        super().__init__()
        self.num_kpoints, self.feature_ch, self.scrambled_grid = num_kpoints, feature_ch, scrambled_grid
        self.commn_linear = nn.Sequential(nn.Linear(para_ch, para_ch), nn.ReLU())
        self.kpoints_normalized_layer = nn.Sequential(nn.Linear(para_ch, 2 * num_kpoints * feature_ch), nn.Tanh())
        self.similarity_params_layer = nn.Sequential(nn.Linear(para_ch, 4 * num_kpoints * feature_ch), nn.Tanh())
        self.radius_layer = nn.Sequential(nn.Linear(para_ch, num_kpoints * feature_ch), nn.Sigmoid())
        # not in the release's state dict (a plain attribute there): a non-persistent buffer follows .to()
        self.register_buffer("standard_grid", standard_grid(grid_size), persistent=False)

    def forward(self, feature_map: torch.Tensor, para_code: torch.Tensor) -> torch.Tensor:
        """In fp32 under bf16 or fp16 autocast: the grids' channel coordinate steps by 2/C, finer than bf16 holds
        near 1, and PyTorch's antialiased resize has no bf16 CPU kernel (docs/benchmarks.md)."""
        with autocast_off(feature_map):
            feature_map, para_code = at_least_fp32(feature_map), at_least_fp32(para_code)
            batch = feature_map.shape[0]
            shape = (batch, self.num_kpoints, self.feature_ch)
            code = self.commn_linear(para_code)
            kpoints = self.kpoints_normalized_layer(code).view(*shape, 2)
            radius = self.radius_layer(code).view(*shape, 1)
            similarity = self.similarity_params_layer(code).view(*shape, 4)
            return self.warp(feature_map, self.coarse_grid(kpoints, radius, similarity))

    def coarse_grid(self, kpoints: torch.Tensor, radius: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        """``(B, C, G, G, 2)``: where each coarse grid point of each channel samples from.

        On CPU it is computed ``CPU_CHANNEL_CHUNK`` channels at a time: channels are independent, so the numbers
        are the same, and the ~30 elementwise passes over ``(B, 5, C, G, G, 2)`` stay in cache (measured 3×
        faster forward + backward at batch 4 on 2 cores). On CUDA one pass over all channels is faster.
        """
        channels = kpoints.shape[2]
        chunk = CPU_CHANNEL_CHUNK if kpoints.device.type == "cpu" else channels
        if channels <= chunk:
            return self._coarse_grid(kpoints, radius, similarity)
        return torch.cat([self._coarse_grid(kpoints[:, :, i:i + chunk], radius[:, :, i:i + chunk],
                                            similarity[:, :, i:i + chunk]) for i in range(0, channels, chunk)], 1)

    def _coarse_grid(self, kpoints: torch.Tensor, radius: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        batch, n, c = kpoints.shape[:3]
        grid = self.standard_grid.to(kpoints.dtype)
        kp = kpoints.reshape(batch, n, c, 1, 1, 2)
        offset = grid - kp  # (B, N, C, G, G, 2)
        weight = torch.exp(-offset.norm(dim=-1, keepdim=True) / radius.reshape(batch, n, c, 1, 1, 1))
        scale = (similarity[..., 0:1] + 1).reshape(batch, n, c, 1, 1, 1) * weight + (1 - weight) * 1.0
        angle = (similarity[..., 1:2] * math.pi).reshape(batch, n, c, 1, 1, 1) * weight
        shift = similarity[..., 2:4].reshape(batch, n, c, 1, 1, 2) * weight
        cos, sin = torch.cos(angle), torch.sin(angle)
        ox, oy = offset[..., 0:1], offset[..., 1:2]
        rotated = torch.cat([ox * cos + oy * sin, ox * -sin + oy * cos], dim=-1)  # o · R^T, R = [[cos, sin], [-sin, cos]]
        moved = scale * rotated + shift + kp
        return (moved * F.softmax(weight, dim=1)).sum(dim=1)

    def warp(self, feature_map: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Resize the coarse grids to the feature map and sample every channel with its own grid."""
        batch, channels, height, width = feature_map.shape
        size = coarse.shape[2]
        if self.scrambled_grid:
            planes = coarse.transpose(-1, -2).permute(0, 1, 4, 2, 3).contiguous().view(batch, 2 * channels, size, size)
        else:
            planes = coarse.permute(0, 1, 4, 2, 3).reshape(batch, 2 * channels, size, size)
        planes = resize_like_torchvision(resize_like_torchvision(planes, (height, width)), (height, width))
        grid_2d = planes.view(batch, channels, 2, height, width).permute(0, 1, 3, 4, 2)
        # the release makes the depth axis in float32 (its default dtype) whatever the features' dtype
        depth = centres(channels).to(device=feature_map.device, dtype=feature_map.dtype)
        depth = depth.view(1, channels, 1, 1, 1).expand(batch, -1, height, width, 1)
        grid_3d = torch.cat([grid_2d, depth], dim=-1)
        return F.grid_sample(feature_map.unsqueeze(1), grid_3d, align_corners=False).squeeze(1)
