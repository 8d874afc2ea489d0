"""AdaAT: DINet's per-channel affine warp of the reference feature map, with the release's quirk kept.

Each of the C feature channels gets its own rotation, scale and translation, predicted from the
256-d alignment+audio code. The sampling grid is built with align-corners-style coordinates
(``2*i/(n-1) - 1``, endpoints included, on x, y *and* the channel/depth axis z) but sampled with
``F.grid_sample(..., align_corners=False)`` (trilinear, zeros padding), as in the release (torch 1.7's
default). So an identity warp does not reproduce its input: borders are half attenuated and each
channel blends with its neighbours along z. The released weights were trained with this, so it is
kept; ``align_corners=True`` exists only to study the difference and breaks released weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ....device import at_least_fp32, autocast_off

PI = 3.14159  # the release writes pi to five decimals; kept for bit-faithful angles


def coordinate_axis(n: int, like: torch.Tensor) -> torch.Tensor:
    """``2*(i/(n-1)) - 1`` for i in [0, n): -1 .. 1 with both endpoints, in ``like``'s dtype/device."""
    return 2 * (torch.arange(n, device=like.device).to(like.dtype) / (n - 1)) - 1


class AdaAT(nn.Module):
    """Adaptive affine transformation (``adaAT`` in the generator); keys ``commn_linear.0``,
    ``scale.0``, ``rotation.0``, ``translation.0``."""

    def __init__(self, para_ch: int = 256, feature_ch: int = 256, align_corners: bool = False):
        super().__init__()
        self.para_ch = para_ch
        self.feature_ch = feature_ch
        self.align_corners = align_corners
        self.commn_linear = nn.Sequential(nn.Linear(para_ch, para_ch), nn.ReLU())
        self.scale = nn.Sequential(nn.Linear(para_ch, feature_ch), nn.Sigmoid())
        self.rotation = nn.Sequential(nn.Linear(para_ch, feature_ch), nn.Tanh())
        self.translation = nn.Sequential(nn.Linear(para_ch, 2 * feature_ch), nn.Tanh())
        self.tanh = nn.Tanh()  # registered (parameter-free) in the release; unused there too
        self.sigmoid = nn.Sigmoid()

    def sampling_grid(self, feature_map: torch.Tensor, para_code: torch.Tensor) -> torch.Tensor:
        """The (B, C, H, W, 3) grid of (x, y, z) sample points for ``grid_sample``."""
        batch, channels, height, width = feature_map.shape
        code = self.commn_linear(para_code)
        scale = (self.scale(code) * 2).view(batch, channels, 1, 1)
        angle = (self.rotation(code) * PI).view(batch, channels, 1, 1)
        shift = self.translation(code).view(batch, channels, 2, 1, 1)
        cos, sin = torch.cos(angle), torch.sin(angle)
        x = coordinate_axis(width, feature_map).view(1, 1, 1, width)
        y = coordinate_axis(height, feature_map).view(1, 1, height, 1)
        z = coordinate_axis(channels, feature_map).view(1, channels, 1, 1)
        # [x', y'] = R @ [x, y] * scale + t with R = [[cos, -sin], [sin, cos]]; z is left unchanged.
        new_x = (cos * x - sin * y) * scale + shift[:, :, 0]
        new_y = (sin * x + cos * y) * scale + shift[:, :, 1]
        new_z = z.expand(batch, channels, height, width)
        return torch.stack([new_x, new_y, new_z], dim=-1)

    def forward(self, feature_map: torch.Tensor, para_code: torch.Tensor) -> torch.Tensor:
        """Warp (B, C, H, W) ``feature_map`` channel-wise with the (B, para_ch) ``para_code``; in fp32 under bf16 or
        fp16 autocast: the grid's channel coordinate steps by 2/C (0.0078 for 256 channels), which bf16 (spacing
        2^-8 near 1) cannot hold, so a bf16 grid blends neighbouring channels (docs/benchmarks.md)."""
        with autocast_off(feature_map):
            feature_map, para_code = at_least_fp32(feature_map), at_least_fp32(para_code)
            grid = self.sampling_grid(feature_map, para_code)
            warped = F.grid_sample(feature_map.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros",
                                   align_corners=self.align_corners)
        return warped.squeeze(1)
