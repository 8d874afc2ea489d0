"""The files LPIPS needs: torchvision's ImageNet backbones and the ``lpips`` package's v0.1 linear heads.

Neither is shipped or downloaded. Backbones are checked against the SHA-256 prefix torchvision puts in
their names; heads against the full SHA-256 of the files in the ``lpips`` 0.1.4 wheel.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping

import torch

from ...errors import CheckpointError
from ...checkpoint import load_state_dict_strict, read_checkpoint
from ...weights import TORCHVISION_LICENCE, KnownWeights
from .network import LinearHeads, LPIPSNetwork, TappedFeatures


VERSION = "0.1"
CLASSIFIER_PREFIX = "classifier."

BACKBONE_WEIGHTS: dict[str, KnownWeights] = {
    "alex": KnownWeights("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                         "LPIPS net=alex (metric lpips)", sha256_prefix="7be5be79", licence=TORCHVISION_LICENCE),
    "vgg": KnownWeights("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
                        "LPIPS net=vgg (metric lpips)", sha256_prefix="397923af", licence=TORCHVISION_LICENCE),
    "squeeze": KnownWeights("squeezenet1_1-b8a52dc0.pth",
                            "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
                            "LPIPS net=squeeze (metric lpips)", sha256_prefix="b8a52dc0",
                            licence=TORCHVISION_LICENCE),
}

# Full SHA-256 of lpips/weights/v0.1/<net>.pth in lpips-0.1.4-py3-none-any.whl (BSD-2-Clause).
HEAD_SHA256 = {
    "alex": "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    "vgg": "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    "squeeze": "4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76",
}
HEAD_WEIGHTS: dict[str, KnownWeights] = {
    net: KnownWeights(f"lpips_v{VERSION}_{net}.pth",
                      f"lpips 0.1.4 wheel (https://pypi.org/project/lpips/0.1.4/): lpips/weights/v{VERSION}/{net}.pth",
                      f"LPIPS net={net} (metric lpips)", sha256_prefix=digest,
                      licence="BSD-2-Clause (richzhang/PerceptualSimilarity LICENSE)")
    for net, digest in HEAD_SHA256.items()
}


def installed_package_head(net: str) -> Path | None:
    """``weights/v0.1/<net>.pth`` of an installed ``lpips`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "weights" / f"v{VERSION}" / f"{net}.pth"
        if path.is_file():
            return path
    return None


def resolve_head_path(net: str, configured: str | Path | None = None) -> Path:
    """The head file to use: ``configured`` if given (even when absent, so the reason names it), else
    ``checkpoints/lpips_v0.1_<net>.pth`` if present, else the installed ``lpips`` package's copy, else
    the default path (absent)."""
    if configured:
        return Path(configured)
    default = HEAD_WEIGHTS[net].default_path()
    if default.is_file():
        return default
    return installed_package_head(net) or default


def _tensor_state(checkpoint: Any, source: str) -> dict[str, torch.Tensor]:
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(f"{source} is not a state dict of tensors")
    return dict(checkpoint)


def backbone_state_dict(checkpoint: Any, source: str) -> dict[str, torch.Tensor]:
    """A torchvision file's state dict without exactly its ``classifier.*`` keys."""
    state = _tensor_state(checkpoint, source)
    return {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIX)}


def load_backbone(backbone: TappedFeatures, path: str | Path) -> None:
    """Load a torchvision ImageNet file into ``backbone`` strictly (CheckpointError names bad keys)."""
    load_state_dict_strict(backbone, backbone_state_dict(read_checkpoint(path), str(path)), str(path))


def load_heads(heads: LinearHeads, path: str | Path) -> None:
    """Load ``lin{k}.model.1.weight`` tensors strictly (CheckpointError names bad keys)."""
    load_state_dict_strict(heads, _tensor_state(read_checkpoint(path), str(path)), str(path))


def load_lpips_network(net: str, backbone_weights: str | Path, head_weights: str | Path,
                       verify: bool = True) -> LPIPSNetwork:
    """``LPIPSNetwork`` in eval mode with both files loaded; with ``verify`` their SHA-256 is checked first."""
    network = LPIPSNetwork(net)
    if verify:
        BACKBONE_WEIGHTS[net].verify(backbone_weights)
        HEAD_WEIGHTS[net].verify(head_weights)
    load_backbone(network.backbone, backbone_weights)
    load_heads(network.heads, head_weights)
    return network.eval()


__all__ = ["BACKBONE_WEIGHTS", "HEAD_SHA256", "HEAD_WEIGHTS", "backbone_state_dict",
           "installed_package_head", "load_backbone", "load_heads", "load_lpips_network", "resolve_head_path"]
