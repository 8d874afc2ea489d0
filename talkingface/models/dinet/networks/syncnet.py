"""DINet's lip-sync expert (``syncnet_256mouth.pth``): no BatchNorm, a score map, no sigmoid.

Keys: ``face_encoder.face_conv.{i}``, ``audio_encoder.audio_conv.{i}``, ``merge_encoder.{0,2}``.
"""
from __future__ import annotations

import torch
from torch import nn


class SyncSameBlock(nn.Module):
    """Conv (stride 1) -> ReLU, 1-D or 2-D."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1, dims: int = 2):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        self.conv = conv(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class SyncDownBlock2d(nn.Module):
    """3×3 conv (stride 1) -> ReLU -> 2×2 average pooling."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.conv(x)))


class SyncDownBlock1d(nn.Module):
    """Conv1d with stride 2 -> ReLU."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_features, out_features, kernel_size=kernel_size, padding=padding, stride=2)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class SyncResBlock(nn.Module):
    """ReLU -> conv1 -> ReLU -> conv2, plus the input (channel counts equal in SyncNet)."""

    def __init__(self, features: int, kernel_size: int = 3, padding: int = 1, dims: int = 2):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        self.conv1 = conv(features, features, kernel_size=kernel_size, padding=padding)
        self.conv2 = conv(features, features, kernel_size=kernel_size, padding=padding)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(self.relu(x)))) + x


class SyncFaceEncoder(nn.Module):
    """Stacked mouth crops (B, in_channel, M, M) -> (B, out_dim, M/32, M/32)."""

    def __init__(self, in_channel: int, out_dim: int):
        super().__init__()
        layers: list[nn.Module] = [SyncSameBlock(in_channel, 64, kernel_size=7, padding=3)]
        widths = [(64, 64, 128), (128, 128, 128), (128, 128, 128), (128, 128, 128)]
        for res, down_out, same_out in widths:  # M -> M/16 in four [Res, Down, Same] steps
            layers += [SyncResBlock(res), SyncDownBlock2d(res, down_out), SyncSameBlock(down_out, same_out)]
        layers += [SyncResBlock(128), SyncDownBlock2d(128, 128), SyncSameBlock(128, out_dim, kernel_size=1, padding=0)]
        self.face_conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.face_conv(x)


class SyncAudioEncoder(nn.Module):
    """(B, in_channel, 9) audio window -> (B, out_dim) (time 9 -> 5 -> 3 -> 2, then averaged)."""

    def __init__(self, in_channel: int, out_dim: int):
        super().__init__()
        self.audio_conv = nn.Sequential(
            SyncSameBlock(in_channel, 128, kernel_size=7, padding=3, dims=1),
            SyncResBlock(128, dims=1), SyncDownBlock1d(128, 128),
            SyncResBlock(128, dims=1), SyncDownBlock1d(128, 128),
            SyncResBlock(128, dims=1), SyncDownBlock1d(128, 128),
            SyncSameBlock(128, out_dim, kernel_size=3, padding=1, dims=1),
        )
        self.global_avg = nn.AdaptiveAvgPool1d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.global_avg(self.audio_conv(x)).flatten(1)


class DINetSyncNet(nn.Module):
    """SyncNet(in_channel_image=15, in_channel_audio=29, out_dim=128) of the release.

    ``forward(mouth_imgs (B,15,M,M), audio (B,29,9))`` -> raw score map (B,1,M/32,M/32); 8×8 at M=256.
    """

    def __init__(self, in_channel_image: int = 15, in_channel_audio: int = 29, out_dim: int = 128):
        super().__init__()
        self.in_channel_image = in_channel_image
        self.in_channel_audio = in_channel_audio
        self.out_dim = out_dim
        self.face_encoder = SyncFaceEncoder(in_channel_image, out_dim)
        self.audio_encoder = SyncAudioEncoder(in_channel_audio, out_dim)
        self.merge_encoder = nn.Sequential(nn.Conv2d(out_dim * 2, out_dim, kernel_size=3, padding=1),
                                           nn.LeakyReLU(0.2),
                                           nn.Conv2d(out_dim, 1, kernel_size=3, padding=1))

    def forward(self, mouth_imgs: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        image_embedding = self.face_encoder(mouth_imgs)
        audio_embedding = self.audio_encoder(audio)[:, :, None, None].expand(-1, -1, *image_embedding.shape[2:])
        return self.merge_encoder(torch.cat([image_embedding, audio_embedding], 1))
