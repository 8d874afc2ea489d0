"""Where the released ArcFace iresnet-100 comes from, and loading a ``backbone.pth`` strictly."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from ...checkpoint import add_missing_batchnorm_counters, load_state_dict_strict, read_checkpoint
from ...device import resolve_device
from ...errors import CheckpointError
from ...weights import KnownWeights
from .network import DEPTHS, IResNet, iresnet

# arcface_torch's model zoo (recognition/arcface_torch/README.md, "Model Zoo": a OneDrive folder and a Baidu Yun Pan
# share) holds one folder per training run with the backbone's bare state dict as ``backbone.pth``; the name here
# keeps that folder (checkpoints/ms1mv3_arcface_r100_fp16/backbone.pth). No SHA-256 is published for it.
ARCFACE_R100 = KnownWeights(
    "ms1mv3_arcface_r100_fp16/backbone.pth",
    "insightface arcface_torch model zoo (deepinsight/insightface recognition/arcface_torch/README.md, 'Model Zoo': "
    "OneDrive 1drv.ms/u/s!AswpsDO2toNKq0lWY69vN58GR6mw or Baidu Yun Pan pan.baidu.com/s/1CL-l4zWqsI1oDuEEYVhj-g, "
    "code e8pw), folder `ms1mv3_arcface_r100_fp16`",
    "ArcFace identity embeddings for E-Net's identity loss (`talkingface.face.arcface`, iresnet100, raw state dict)",
    licence="code MIT (deepinsight/insightface LICENSE); weights: 'The models are available for non-commercial "
            "research purposes only.' (arcface_torch README, Model Zoo; the insightface README: models trained with "
            "its data 'are available for non-commercial research purposes only')")


def load_arcface(path: str | Path | None = None, name: str = "r100",
                 device: str | torch.device | None = "cpu") -> IResNet:
    """The ``iresnet(name)`` backbone (``r18``, ``r34``, ``r50``, ``r100``, ``r200``; ``fp16=False`` as
    Deep3DFaceRecon builds it) with ``path``'s weights, frozen (every parameter ``requires_grad=False``), in eval
    mode on ``device``.

    ``path`` defaults to ``checkpoints/ms1mv3_arcface_r100_fp16/backbone.pth`` for ``r100`` (other depths need a
    path). The file is read with ``weights_only=True``; it is a bare state dict (arcface_torch saves
    ``backbone.module.state_dict()``: no wrapper, no ``module.`` prefix) and is loaded strictly: every key and shape
    must match (BatchNorm ``num_batches_tracked`` counters, which do not change eval outputs, are added where a file
    lacks them). A missing file raises CheckpointError naming it and where to get it.
    """
    if name not in DEPTHS:
        raise ValueError(f"unknown iresnet {name!r}: expected one of {', '.join(DEPTHS)}")
    if path is None:
        if name != "r100":
            raise CheckpointError(f"no released file is declared for iresnet {name!r}: give the path of its "
                                  "backbone.pth")
        path = ARCFACE_R100.default_path()
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{ARCFACE_R100.filename if name == 'r100' else 'backbone.pth'} not found at {path}: "
                              f"get it from {ARCFACE_R100.source} (see checkpoints/README.md)")
    state = read_checkpoint(path)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a bare iresnet state dict (name -> tensor), got "
                              f"{type(state).__name__}")
    network = iresnet(name)
    load_state_dict_strict(network, add_missing_batchnorm_counters(state), str(path))
    network.requires_grad_(False)
    target = device if isinstance(device, torch.device) else resolve_device(device)
    return network.eval().to(target)
