"""LawDNet's released weight files (declared as data: `talkingface list --weights`, checkpoints/README.md)."""
from __future__ import annotations

from ...weights import KnownWeights
from ..dinet.releases import SYNCNET_256

SOURCE = ("`pretrain_model/checkpoint_epoch_170.pth` behind the Baidu Netdisk link in the iPaw-AI-LAB/LawDNet_2024 "
          "README")

CLIP_288 = KnownWeights(
    "checkpoint_epoch_170.pth", SOURCE, "model `lawdnet` (clip stage, mouth 288)",
    fills=("networks.generator", "networks.frame_discriminator", "networks.clip_discriminator"),
    licence="not stated (iPaw-AI-LAB/LawDNet_2024 has no licence file and its README states none)")

RELEASES = (CLIP_288, SYNCNET_256)  # the clip stage scores lip sync with DINet's released SyncNet
