"""LawDNet's audio/video cross-attention (``ImprovedCrossAttentionModel``), with the release's layout.

The alignment features ``(B, 128, 8, 6)`` and audio features ``(B, 128, 2)`` get learned positional
encodings; audio rows are queries, video rows keys and values (each projected to 256), and the attended
``(B, 128, 256)`` goes through ``final_linear`` and ``FlattenAndLinear`` (Conv1d 128->64, ReLU, max-pool 2,
flatten 8192, Linear, ReLU) to the ``(B, 256)`` code that drives the warps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VIDEO_CHANNELS, VIDEO_SIZE, AUDIO_STEPS, WIDTH = 128, (8, 6), 2, 256


class FlattenAndLinear(nn.Module):
    """``(B, 128, 256)`` -> ``(B, 256)``: Conv1d(128->64, k3) -> ReLU -> MaxPool1d(2) -> flatten -> Linear -> ReLU."""

    def __init__(self, in_channels: int = VIDEO_CHANNELS):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, 64, kernel_size=3, stride=1, padding=1)
        self.pool = nn.MaxPool1d(kernel_size=2, stride=2)
        self.fc = nn.Linear(64 * 128, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        return F.relu(self.fc(x.flatten(1)))


class CrossAttention(nn.Module):
    """``(B, 128, 8, 6)`` video and ``(B, 128, 2)`` audio features -> ``(B, 256)``."""

    def __init__(self):
        super().__init__()
        self.positional_encoding_video = nn.Parameter(torch.randn(VIDEO_CHANNELS, *VIDEO_SIZE))
        self.positional_encoding_audio = nn.Parameter(torch.randn(VIDEO_CHANNELS, AUDIO_STEPS))
        self.query_proj = nn.Linear(AUDIO_STEPS, WIDTH)
        self.key_proj = nn.Linear(VIDEO_SIZE[0] * VIDEO_SIZE[1], WIDTH)
        self.value_proj = nn.Linear(VIDEO_SIZE[0] * VIDEO_SIZE[1], WIDTH)
        self.final_linear = nn.Linear(WIDTH, WIDTH)
        self.output_reshape = FlattenAndLinear(VIDEO_CHANNELS)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        video = (video + self.positional_encoding_video).flatten(2)  # (B, 128, 48)
        audio = audio + self.positional_encoding_audio  # (B, 128, 2)
        query, key, value = self.query_proj(audio), self.key_proj(video), self.value_proj(video)
        attention = F.softmax(torch.bmm(query, key.transpose(1, 2)) / WIDTH ** 0.5, dim=-1)
        return self.output_reshape(self.final_linear(torch.bmm(attention, value)))
