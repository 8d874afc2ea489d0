"""All of DINet's networks in one module, plus the face/mouth geometry they assume."""
from __future__ import annotations

import torch
from torch import nn

from ....errors import ConfigError
from .discriminator import Discriminator
from .generator import DINetGenerator
from .syncnet import DINetSyncNet


def check_mouth_size(mouth: int) -> int:
    """Mouth sizes must be positive multiples of 32 (SyncNet halves M five times; the generator's
    face crop 13M/8 × 5M/4 must be a multiple of 4)."""
    if not isinstance(mouth, int) or isinstance(mouth, bool) or mouth <= 0 or mouth % 32:
        raise ConfigError(f"DINet mouth_region_size must be a positive multiple of 32, got {mouth!r}")
    return mouth


def face_size(mouth: int) -> tuple[int, int]:
    """Face crop (H, W) for mouth size M: (3M/2 + M/8, M + M/4); 64 -> (104, 80), 256 -> (416, 320)."""
    mouth = check_mouth_size(mouth)
    return mouth * 3 // 2 + mouth // 8, mouth + mouth // 4


def mouth_box(mouth: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the mouth inside the face crop: rows [M/2, 3M/2), cols [M/8, 9M/8)."""
    mouth = check_mouth_size(mouth)
    return mouth // 2, mouth // 2 + mouth, mouth // 8, mouth // 8 + mouth


class DINetNetworks(nn.Module):
    """DINet's generator, SyncNet and the two discriminators (no training logic).

    Attributes: ``generator`` (net_g), ``syncnet`` (frozen lip-sync expert in the release),
    ``frame_discriminator`` (net_dI, 3 channels), ``clip_discriminator`` (net_dV, 15 channels).
    ``syncnet_audio_channel`` defaults to ``audio_channel``; the released SyncNet uses 29.
    """

    def __init__(self, mouth_region_size: int = 256, audio_channel: int = 29,
                 syncnet_audio_channel: int | None = None, adaat_align_corners: bool = False):
        super().__init__()
        self.mouth_region_size = check_mouth_size(mouth_region_size)
        self.audio_channel = audio_channel
        self.generator = DINetGenerator(3, 15, audio_channel, adaat_align_corners=adaat_align_corners)
        self.syncnet = DINetSyncNet(15, syncnet_audio_channel or audio_channel, 128)
        self.frame_discriminator = Discriminator(3, block_expansion=64, num_blocks=4, max_features=256)
        self.clip_discriminator = Discriminator(15, block_expansion=64, num_blocks=4, max_features=256)

    face_size = staticmethod(face_size)
    mouth_box = staticmethod(mouth_box)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of this container's face crops."""
        return face_size(self.mouth_region_size)

    def crop_mouth(self, faces: torch.Tensor) -> torch.Tensor:
        """The (…, M, M) mouth region of (…, H, W) face crops (what SyncNet sees)."""
        top, bottom, left, right = mouth_box(self.mouth_region_size)
        return faces[..., top:bottom, left:right]

    def mask_mouth(self, faces: torch.Tensor) -> torch.Tensor:
        """A copy of ``faces`` with the mouth box zeroed (the generator's source input)."""
        top, bottom, left, right = mouth_box(self.mouth_region_size)
        masked = faces.clone()
        masked[..., top:bottom, left:right] = 0
        return masked
