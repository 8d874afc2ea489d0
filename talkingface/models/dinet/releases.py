"""DINet's released weight files (declared as data: `talkingface list --weights`, checkpoints/README.md)."""
from __future__ import annotations

from ...weights import KnownWeights

LICENCE = "not stated (MRzzm/DINet has no licence file; its issue #64 asking for one is unanswered)"

SOURCE = ("`asserts.zip` in the Google Drive folder linked from the MRzzm/DINet README "
          "(drive.google.com/drive/folders/1rPtOo9Uuhc59YfFVv4gBmkh0_oG0nCQb)")

CLIP_256 = KnownWeights(
    "clip_training_DINet_256mouth.pth", SOURCE, "model `dinet` (clip stage, mouth 256; HDTF)",
    fills=("networks.generator", "networks.frame_discriminator", "networks.clip_discriminator"), licence=LICENCE)
SYNCNET_256 = KnownWeights(
    "syncnet_256mouth.pth", SOURCE, "models `dinet` and `lawdnet` (the clip stage's frozen SyncNet)",
    fills=("networks.syncnet",), licence=LICENCE)

RELEASES = (CLIP_256, SYNCNET_256)
