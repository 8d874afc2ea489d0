"""DINet's networks with the official module layout and numerics (state-dict compatible with the release)."""
from .adaat import PI, AdaAT
from ...common.blocks import DownBlock1d, DownBlock2d, ResBlock1d, ResBlock2d, SameBlock1d, SameBlock2d, UpBlock2d
from .container import DINetNetworks, check_mouth_size, face_size, mouth_box
from .convert import OFFICIAL_NETWORKS, convert_dinet_checkpoint, official_dinet_layout
from .discriminator import Discriminator, DiscriminatorBlock
from .generator import DINetGenerator
from .syncnet import DINetSyncNet

__all__ = [
    "PI", "AdaAT", "DownBlock1d", "DownBlock2d", "ResBlock1d", "ResBlock2d", "SameBlock1d", "SameBlock2d",
    "UpBlock2d", "DINetNetworks", "check_mouth_size", "face_size", "mouth_box", "OFFICIAL_NETWORKS",
    "convert_dinet_checkpoint", "official_dinet_layout",
    "Discriminator", "DiscriminatorBlock", "DINetGenerator", "DINetSyncNet",
]
