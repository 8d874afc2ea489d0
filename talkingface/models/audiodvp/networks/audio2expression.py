"""AudioDVP's person-specific Audio2Expression network (``models/networks.py: AudioExpressionModule``): a window of
per-frame audio features -> 64 expression coefficients (docs: 3dmm_methods.md §1.4, §9)."""
from __future__ import annotations

import torch
from torch import nn


class AudioExpression(nn.Module):
    """(B, window, feature_dim) -> (B, exp_dim, 1): three unpadded 1-D convolutions over the feature axis
    (window→5→3→1 channels, kernel 3) and a linear layer, **without activations** (the whole map is linear).

    The release has ``window=7`` frames of 256-d AT-net features (Linear 250→64, 16,232 parameters); ``feature_dim``
    follows whatever audio feature feeds it.
    """

    def __init__(self, window: int = 7, feature_dim: int = 256, exp_dim: int = 64) -> None:
        super().__init__()
        if feature_dim <= 6:
            raise ValueError(f"AudioExpression needs feature_dim > 6 (three kernel-3 convolutions), got {feature_dim}")
        self.window, self.feature_dim, self.exp_dim = window, feature_dim, exp_dim
        self.conv1 = nn.Conv1d(window, 5, 3)
        self.conv2 = nn.Conv1d(5, 3, 3)
        self.conv3 = nn.Conv1d(3, 1, 3)
        self.fc = nn.Linear(feature_dim - 6, exp_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 3 or tuple(features.shape[1:]) != (self.window, self.feature_dim):
            raise ValueError(f"AudioExpression expects (B, {self.window}, {self.feature_dim}), got "
                             f"{tuple(features.shape)}")
        x = self.conv3(self.conv2(self.conv1(features)))  # (B, 1, feature_dim - 6)
        return self.fc(x.flatten(1)).unsqueeze(-1)
