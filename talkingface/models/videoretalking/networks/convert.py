"""VideoReTalking's released files -> our networks' state dicts, recognised by content (not by file name).

The official loaders (``models/__init__.py`` of OpenTalker/video-retalking) read ``LNet.pth`` and ``ENet.pth`` as
``checkpoint["state_dict"]``, drop every key containing ``low_res`` and remove ``module.`` wherever it occurs in a
key, and ``DNet.pt`` as ``checkpoint["net_G_ema"]`` (the EMA generator of a PIRender-style trainer); all three with
``strict=False``. Ours do the same selection and then load strictly (the model reports any other difference). So
E-Net's inner L-Net always comes from ``LNet.pth``, never from the ``low_res.*`` copy inside ``ENet.pth``, exactly as
the release runs. The legacy spectral-norm keys (``weight_orig``, ``weight_u``, ``weight_v``) are kept as they are.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ....errors import CheckpointError

# Key prefixes that only each file's network has (after the official key clean-up): any one of them recognises it.
SIGNATURES = {"dnet": ("warpping_net.", "editing_net.", "mapping_net."),
              "enet": ("style_convs.", "conv_body_first.", "conv_body_down.", "to_rgbs.", "final_linear."),
              "lnet": ("audio_encoder.", "decoder.res2.", "encoder.ca2.")}
RELEASE_FILES = {"lnet": "LNet.pth", "enet": "ENet.pth", "dnet": "DNet.pt"}


def _official_clean(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The official ``load_checkpoint``'s key clean-up: keys with ``low_res`` dropped, ``module.`` removed."""
    return {k.replace("module.", ""): v for k, v in state_dict.items() if "low_res" not in k}


def release_kind(checkpoint: Any) -> str | None:
    """``"lnet"``, ``"enet"`` or ``"dnet"`` for the contents of ``LNet.pth``, ``ENet.pth`` or ``DNet.pt`` (whatever
    the file is called), or None for anything else."""
    if not isinstance(checkpoint, Mapping):
        return None
    if isinstance(checkpoint.get("net_G_ema"), Mapping):
        return "dnet" if any(str(k).startswith(SIGNATURES["dnet"]) for k in checkpoint["net_G_ema"]) else None
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        return None
    keys = _official_clean(state)
    for kind in ("enet", "lnet"):  # E-Net first: its file may also hold an L-Net (dropped as low_res above)
        if any(k.startswith(SIGNATURES[kind]) for k in keys):
            return kind
    return None


def convert_release(checkpoint: Any, source: str = "checkpoint") -> dict[str, dict[str, torch.Tensor]]:
    """``{"lnet" | "enet" | "dnet": state_dict}`` from a released file's contents, selected as the official loader
    selects (E-Net's entry holds its own keys only). CheckpointError naming ``source`` for anything else."""
    kind = release_kind(checkpoint)
    if kind is None:
        found = sorted(map(str, checkpoint))[:8] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointError(f"{source} is not one of VideoReTalking's releases ({', '.join(RELEASE_FILES.values())}:"
                              f" ['state_dict'] with L-Net or E-Net keys, or ['net_G_ema'] with D-Net keys); found "
                              f"{found}")
    state = checkpoint["net_G_ema"] if kind == "dnet" else _official_clean(checkpoint["state_dict"])
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: {RELEASE_FILES[kind]} entries that are not tensors: {', '.join(bad[:5])}")
    return {kind: dict(state)}
