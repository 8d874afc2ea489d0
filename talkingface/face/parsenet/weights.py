"""Where ``ParseNet-latest.pth`` comes from, and loading it strictly."""
from __future__ import annotations

from pathlib import Path

import torch

from ...checkpoint import load_state_dict_strict, read_checkpoint
from ...errors import CheckpointError
from ...weights import KnownWeights
from .network import ParseNet

PARSENET_LATEST = KnownWeights(
    "ParseNet-latest.pth", "GitHub release v0.0.1 of vinthony/video-retalking (GPEN's ParseNet)",
    "VideoReTalking's face and mouth masks (`talkingface.face.parsenet.ParseNet`, raw state dict)",
    licence="not stated (yangxy/GPEN has no licence file; its README said 'For academic and non-commercial use only' "
            "until 2026-03; the network code is PSFRGAN's, CC-BY-NC-SA-4.0)")


def load_parsenet(path: str | Path | None = None, device: str | torch.device = "cpu") -> ParseNet:
    """The release's ``ParseNet`` with ``path``'s weights (default ``checkpoints/ParseNet-latest.pth``), loaded
    strictly (a raw state dict, as GPEN saves it; a ``module.`` prefix is not expected and not removed), in eval
    mode on ``device``. A missing file raises CheckpointError naming it and where to get it; missing, unexpected or
    misshapen keys raise CheckpointError naming the file and the keys."""
    path = Path(path) if path is not None else PARSENET_LATEST.default_path()
    if not path.is_file():
        raise CheckpointError(f"{PARSENET_LATEST.filename} not found at {path}: get it from {PARSENET_LATEST.source} "
                              "(see checkpoints/README.md)")
    state = read_checkpoint(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a raw ParseNet state dict (name -> tensor), got "
                              f"{type(state).__name__}")
    net = ParseNet()
    load_state_dict_strict(net, state, str(path))
    return net.eval().to(device)
