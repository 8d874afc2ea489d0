"""GFPGANv1.3.pth: where it comes from, and its strict loading."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from ...checkpoint import load_state_dict_strict, read_checkpoint
from ...errors import CheckpointError
from ...weights import KnownWeights
from .network import GFPGANv1Clean, gfpgan_v13

# No SHA-256 is published for it (neither by vinthony/video-retalking nor by TencentARC/GFPGAN's release v1.3.0).
GFPGAN_V13 = KnownWeights(
    "GFPGANv1.3.pth", source="GitHub release v0.0.1 of vinthony/video-retalking (TencentARC/GFPGAN v1.3)",
    used_by="VideoReTalking output restoration (talkingface.restoration.gfpgan)",
    licence="Apache-2.0 (TencentARC/GFPGAN LICENSE, except its third-party components: StyleGAN2 (NVIDIA licence) "
            "and DFDNet (CC-BY-NC-SA-4.0))")

# What GFPGANer reads, in order of preference: a checkpoint of GFPGAN's trainer (basicsr's save_network) holds the
# generator being trained as 'params' and its exponential moving average as 'params_ema'.
STATE_KEYS = ("params_ema", "params")


def _check_exists(path: Path) -> None:
    reason = GFPGAN_V13.missing_reason(path)
    if reason:
        raise CheckpointError(f"{reason} (get {GFPGAN_V13.filename} from {GFPGAN_V13.source})")


def gfpgan_state(checkpoint: object, source: str) -> tuple[str, Mapping[str, torch.Tensor]]:
    """``(key, state dict)`` of a GFPGAN checkpoint: ``['params_ema']`` as GFPGANer reads it, else ``['params']``
    (its fallback); any other top-level entry is ignored. CheckpointError naming what the file holds otherwise."""
    if isinstance(checkpoint, Mapping):
        for key in STATE_KEYS:
            if isinstance(checkpoint.get(key), Mapping):
                return key, checkpoint[key]
        held = ", ".join(repr(k) for k in list(checkpoint)[:10]) + (", ..." if len(checkpoint) > 10 else "")
        what = f"a dict with the keys {held or 'none'}"
    else:
        what = type(checkpoint).__name__
    raise CheckpointError(f"{source}: expected GFPGAN's {{'params_ema': state dict}} (or 'params', the "
                          f"non-EMA weights of a training checkpoint), found {what}")


def load_gfpgan_weights(net: GFPGANv1Clean, path: str | Path) -> GFPGANv1Clean:
    """Load ``GFPGANv1.3.pth`` (or a file of the same layout) into ``net`` strictly, as GFPGANer does
    (``load_state_dict(loadnet['params_ema'], strict=True)``)."""
    path = Path(path)
    _check_exists(path)
    key, state = gfpgan_state(read_checkpoint(path, map_location="cpu"), str(path))
    load_state_dict_strict(net, state, f"{path}['{key}']")
    return net


def load_gfpgan(path: str | Path | None = None, device: str | torch.device = "cpu",
                noise: str = "random") -> GFPGANv1Clean:
    """The GFPGANv1.3 network with the release's weights (default ``checkpoints/GFPGANv1.3.pth``), in eval mode on
    ``device``. ``noise``: the decoder's noise (``"random"`` as the release, ``"zero"`` for deterministic output)."""
    path = Path(path or GFPGAN_V13.default_path())
    _check_exists(path)  # before building 86 M parameters
    return load_gfpgan_weights(gfpgan_v13(noise), path).eval().to(device)
