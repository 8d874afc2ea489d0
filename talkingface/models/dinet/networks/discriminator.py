"""DINet's patch discriminators: ``net_dI`` (single frames, 3 channels) and ``net_dV`` (5 frames, 15)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DiscriminatorBlock(nn.Module):
    """4×4 conv without padding -> LeakyReLU(0.2) -> optional 2×2 average pooling (key ``conv``)."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 4, pool: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv(x), 0.2)
        return F.avg_pool2d(out, (2, 2)) if self.pool else out


class Discriminator(nn.Module):
    """Discriminator(num_channels, block_expansion=64, num_blocks=4, max_features=256).

    ``forward(x)`` returns ``(feature_maps, patch_logits)``: the output of every down block and a
    (B, 1, h, w) map of raw LSGAN scores (1×46×34 at 416×320). DINet's config passes max_features 256.
    """

    def __init__(self, num_channels: int, block_expansion: int = 64, num_blocks: int = 4, max_features: int = 256):
        super().__init__()
        blocks = []
        for i in range(num_blocks):
            in_features = num_channels if i == 0 else min(max_features, block_expansion * 2 ** i)
            out_features = min(max_features, block_expansion * 2 ** (i + 1))
            blocks.append(DiscriminatorBlock(in_features, out_features, kernel_size=4, pool=i != num_blocks - 1))
        self.down_blocks = nn.ModuleList(blocks)
        self.conv = nn.Conv2d(blocks[-1].conv.out_channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        feature_maps = []
        out = x
        for block in self.down_blocks:
            out = block(out)
            feature_maps.append(out)
        return feature_maps, self.conv(out)
