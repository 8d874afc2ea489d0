"""All of LawDNet's networks in one module: its generator, and DINet's SyncNet and discriminators.

The release trains with DINet's patch discriminators (``models/Discriminator.py``: the same layers and keys,
max_features 256) and scores lip sync with DINet's released ``syncnet_256mouth.pth`` (DeepSpeech v0.1 features),
feeding it the mouth of the crop resized to 256 × 256 (``train_LawDNet_clip*.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...dinet.networks import Discriminator, DINetSyncNet
from ...dinet.networks.container import check_mouth_size, face_size, mouth_box
from .generator import LawDNetGenerator

SYNCNET_MOUTH = 256  # the released SyncNet's input size


class LawDNetNetworks(nn.Module):
    """``generator`` (net_g), ``syncnet`` (DINet's, frozen), ``frame_discriminator`` (net_dI) and
    ``clip_discriminator`` (net_dV); ``mouth_region_size`` is the crop geometry of the current stage."""

    def __init__(self, mouth_region_size: int = 288, audio_channel: int = 29, syncnet_audio_channel: int = 29,
                 scrambled_grid: bool = True, skip_dead_layers: bool = True, syncnet_mouth: int = SYNCNET_MOUTH):
        super().__init__()
        self.mouth_region_size = check_mouth_size(mouth_region_size)
        self.syncnet_mouth = check_mouth_size(syncnet_mouth)
        self.audio_channel = audio_channel
        self.generator = LawDNetGenerator(3, 15, audio_channel, scrambled_grid=scrambled_grid,
                                          skip_dead_layers=skip_dead_layers)
        self.syncnet = DINetSyncNet(15, syncnet_audio_channel, 128)
        self.frame_discriminator = Discriminator(3, block_expansion=64, num_blocks=4, max_features=256)
        self.clip_discriminator = Discriminator(15, block_expansion=64, num_blocks=4, max_features=256)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the current aligned crops: (13M/8, 5M/4), 468 × 360 at mouth 288."""
        return face_size(self.mouth_region_size)

    def crop_mouth(self, faces: torch.Tensor) -> torch.Tensor:
        """SyncNet's input: the ``M × M`` mouth (rows ``[M/2, 3M/2)``, cols ``[M/8, 9M/8)``) of ``(B, C, H, W)``
        crops, bilinearly resized to 256 × 256 when ``M`` differs (``F.interpolate``, half-pixel, as the release)."""
        top, bottom, left, right = mouth_box(self.mouth_region_size)
        mouths = faces[..., top:bottom, left:right]
        if mouths.shape[-1] != self.syncnet_mouth:
            mouths = F.interpolate(mouths, size=(self.syncnet_mouth, self.syncnet_mouth), mode="bilinear")
        return mouths
