"""SyncNet ``S`` of joonson/syncnet_python with the key layout of the released ``syncnet_v2.model``."""
from __future__ import annotations

import torch
from torch import nn

EMBEDDING_SIZE = 1024


def _conv2d_block(cin: int, cout: int, **conv) -> list[nn.Module]:
    """Conv2d, BatchNorm2d, ReLU: three consecutive ``nn.Sequential`` positions."""
    return [nn.Conv2d(cin, cout, **conv), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _conv3d_block(cin: int, cout: int, **conv) -> list[nn.Module]:
    """Conv3d, BatchNorm3d, ReLU: three consecutive ``nn.Sequential`` positions."""
    return [nn.Conv3d(cin, cout, **conv), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


def _audio_cnn() -> nn.Sequential:
    """``(B, 1, 13, 20)`` MFCC window -> ``(B, 512, 1, 1)``; spatial 13x20 -> 11x9 -> 5x4 -> 1x1."""
    return nn.Sequential(
        *_conv2d_block(1, 64, kernel_size=3, padding=1),
        nn.MaxPool2d(kernel_size=1, stride=1),
        *_conv2d_block(64, 192, kernel_size=3, padding=1),
        nn.MaxPool2d(kernel_size=3, stride=(1, 2)),
        *_conv2d_block(192, 384, kernel_size=3, padding=1),
        *_conv2d_block(384, 256, kernel_size=3, padding=1),
        *_conv2d_block(256, 256, kernel_size=3, padding=1),
        nn.MaxPool2d(kernel_size=3, stride=2),
        *_conv2d_block(256, 512, kernel_size=(5, 4)),
    )


def _lip_cnn() -> nn.Sequential:
    """``(B, 3, 5, 224, 224)`` frames -> ``(B, 512, 1, 1, 1)``; spatial 224 -> 109 -> 54 -> 26 -> 13 -> 6 -> 1."""
    return nn.Sequential(
        *_conv3d_block(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2)),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
        *_conv3d_block(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        *_conv3d_block(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
        *_conv3d_block(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
        *_conv3d_block(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
        *_conv3d_block(256, 512, kernel_size=(1, 6, 6)),
    )


def _fc_head(size: int) -> nn.Sequential:
    """``(B, 512)`` -> ``(B, size)``: Linear, BatchNorm1d, ReLU, Linear."""
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, size))


class SyncNet(nn.Module):
    """Two-stream audio-visual sync network; both streams embed 0.2 s (5 frames, 20 MFCC steps)."""

    def __init__(self, embedding_size: int = EMBEDDING_SIZE):
        super().__init__()
        self.netcnnaud = _audio_cnn()
        self.netfcaud = _fc_head(embedding_size)
        self.netcnnlip = _lip_cnn()
        self.netfclip = _fc_head(embedding_size)

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 13, 20)`` int16-scale MFCC -> ``(B, 1024)`` unnormalised embedding."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 5, 224, 224)`` BGR float in [0, 255] -> ``(B, 1024)`` unnormalised embedding."""
        return self.netfclip(self.netcnnlip(x).flatten(1))
