"""Where ``GPEN-BFR-512.pth`` comes from, and loading it strictly."""
from __future__ import annotations

from pathlib import Path

import torch

from ...checkpoint import load_state_dict_strict, read_checkpoint
from ...errors import CheckpointError
from ...weights import KnownWeights
from .network import FullGenerator

# VideoReTalking's inference.py: FaceEnhancement(size=512, model='GPEN-BFR-512', channel_multiplier=2, narrow=1),
# whose FaceGAN builds FullGenerator(512, 512, n_mlp=8, channel_multiplier, narrow=narrow).
RELEASE_CONFIG = {"size": 512, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2, "narrow": 1}

GPEN_BFR_512 = KnownWeights(
    "GPEN-BFR-512.pth", source="GitHub release v0.0.1 of vinthony/video-retalking (yangxy/GPEN's GPEN-BFR-512)",
    used_by="VideoReTalking reference enhancement (talkingface.restoration.gpen)",
    licence="not stated (yangxy/GPEN has no licence file; its README said 'For academic and non-commercial use only' "
            "until 2026-03)")


def gpen_bfr_512() -> FullGenerator:
    """The release's architecture with untrained weights."""
    return FullGenerator(**RELEASE_CONFIG)


def load_gpen(path: str | Path | None = None, device: str | torch.device = "cpu") -> FullGenerator:
    """GPEN-BFR-512 with ``path``'s weights (default ``checkpoints/GPEN-BFR-512.pth``), loaded strictly (a raw state
    dict, as GPEN saves it and ``FaceGAN.load_model`` reads it; blur kernels included), in eval mode on ``device``.
    A missing file raises CheckpointError naming it and where to get it; missing, unexpected or misshapen keys raise
    CheckpointError naming the file and the keys."""
    path = Path(path) if path is not None else GPEN_BFR_512.default_path()
    if not path.is_file():
        raise CheckpointError(f"{GPEN_BFR_512.filename} not found at {path}: get it from {GPEN_BFR_512.source} "
                              "(see checkpoints/README.md)")
    state = read_checkpoint(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a raw GPEN state dict (name -> tensor), got {type(state).__name__}")
    net = gpen_bfr_512()
    load_state_dict_strict(net, state, str(path))
    return net.eval().to(device)
