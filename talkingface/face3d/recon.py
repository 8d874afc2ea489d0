"""Deep3DFaceRecon's coefficient regressor: ``ReconNetWrapper('resnet50', use_last_fc=False)`` as ``ReconNet``.

A torchvision-layout ResNet-50 (``backbone``, ``talkingface.nets.resnet``) gives average-pooled (B, 2048, 1, 1)
features; seven 1x1 convolutions with bias (``final_layers.0..6``: id 80, exp 64, tex 80, angle 3, gamma 27,
tx/ty 2, tz 1; zero-initialised as in the original) are concatenated in that order and flattened to (B, 257).
The input is RGB in [0, 1] as given: the network does not normalise it. The weights are Deep3DFaceRecon's
``epoch_20.pth`` or VideoReTalking's ``face3d_pretrain_epoch_20.pth``, both ``{'net_recon': state_dict, ...}``,
loaded strictly by ``ReconNet.load_checkpoint`` (docs/face3d.md, "Coefficient regressor (ReconNet) and
align_img").
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..checkpoint import load_state_dict_strict, read_release, strip_prefix
from ..errors import CheckpointError
from ..weights import KnownWeights
from ..nets.resnet import FEATURES, ResNet50

# (name, width) of the regressor's output blocks, in the order of final_layers and of the 257 outputs.
FINAL_LAYERS = (("id", 80), ("exp", 64), ("tex", 80), ("angle", 3), ("gamma", 27), ("txy", 2), ("tz", 1))
COEFF_DIM = sum(width for _, width in FINAL_LAYERS)  # 257
# The split downstream code uses (Deep3DFaceRecon's split_coeff; tx, ty, tz together as 'trans').
COEFF_SLICES = {"id": slice(0, 80), "exp": slice(80, 144), "tex": slice(144, 224), "angle": slice(224, 227),
                "gamma": slice(227, 254), "trans": slice(254, 257)}
INPUT_SIZE = 224
CHECKPOINT_KEY = "net_recon"

DEEP3DFACERECON_EPOCH_20 = KnownWeights(
    "epoch_20.pth",
    "Deep3DFaceRecon_pytorch README: Google Drive folder drive.google.com/drive/folders/"
    "1liaIxn9smpudjjqMaWWRpP0mXRW_qRPP (`checkpoints/<model_name>/epoch_20.pth`)",
    "Deep3DFaceRecon coefficient regressor (`talkingface.face3d.ReconNet`, `['net_recon']`)",
    fills=("backbone", "final_layers"),
    licence="MIT (sicxu/Deep3DFaceRecon_pytorch LICENSE; nothing separate for the weights; trained with BFM09, whose "
            "own terms are non-commercial)")
VIDEORETALKING_FACE3D = KnownWeights(
    "face3d_pretrain_epoch_20.pth",
    "GitHub release `v0.0.1` of vinthony/video-retalking (also its README's Google Drive folder)",
    "VideoReTalking's Deep3DFaceRecon regressor (`talkingface.face3d.ReconNet`, `['net_recon']`)",
    fills=("backbone", "final_layers"),
    licence="Apache-2.0 (OpenTalker/video-retalking LICENSE; its README said personal/research/non-commercial use "
            "only from 2023-03 to 2023-09)")
RELEASES = (DEEP3DFACERECON_EPOCH_20, VIDEORETALKING_FACE3D)


class ReconNet(nn.Module):
    """Image (B, 3, H, W) RGB in [0, 1] (224 x 224 from ``align_img``) -> (B, 257) coefficients, equal to
    Deep3DFaceRecon's ``ReconNetWrapper('resnet50', use_last_fc=False)``. Put it in eval mode for inference
    (``load_checkpoint`` does): in train mode BatchNorm uses batch statistics, as the original would."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = ResNet50(use_last_fc=False)
        self.final_layers = nn.ModuleList(nn.Conv2d(FEATURES, width, kernel_size=1, bias=True)
                                          for _, width in FINAL_LAYERS)
        for layer in self.final_layers:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"ReconNet expects images (B, 3, H, W) RGB in [0, 1], got {tuple(image.shape)}")
        features = self.backbone(image)
        return torch.flatten(torch.cat([layer(features) for layer in self.final_layers], dim=1), 1)

    def load_checkpoint(self, path: str | Path) -> "ReconNet":
        """Load ``path``'s ``['net_recon']`` (or a bare state dict of this layout; a ``module.`` prefix is
        removed) strictly: missing, unexpected or misshapen keys raise CheckpointError naming the file and the
        keys. Leaves the network in eval mode and returns it."""
        state = net_recon_state(read_recon_checkpoint(path), path)
        load_state_dict_strict(self, state, str(path))
        return self.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> "ReconNet":
        """A ``ReconNet`` with ``path``'s weights, in eval mode, on ``device``."""
        return cls().load_checkpoint(path).to(device)


def read_recon_checkpoint(path: str | Path) -> Any:
    """Read ``path`` (``checkpoint.read_release``). Deep3DFaceRecon's ``epoch_20.pth`` also holds the optimiser and
    scheduler states (``opt_00``, ``sched_00``); only ``net_recon`` is used."""
    return read_release(path)


def net_recon_state(checkpoint: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The regressor's state dict in ``checkpoint``: ``checkpoint['net_recon']`` (Deep3DFaceRecon, VideoReTalking)
    or ``checkpoint`` itself when it is a bare state dict; a ``module.`` (DataParallel) prefix removed."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{path}: expected a dict with '{CHECKPOINT_KEY}', got {type(checkpoint).__name__}")
    if CHECKPOINT_KEY in checkpoint:
        state = checkpoint[CHECKPOINT_KEY]
    elif checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state = checkpoint
    else:
        keys = ", ".join(sorted(map(str, checkpoint))[:10])
        raise CheckpointError(f"{path}: no '{CHECKPOINT_KEY}' entry (top-level keys: {keys})")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: '{CHECKPOINT_KEY}' is not a state dict of tensors")
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):
        state = strip_prefix(state, "module.")
    return state


def split_coeffs(coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, 257) -> id 80, exp 64, tex 80, angle 3, gamma 27, trans 3 (views), as Deep3DFaceRecon's
    ``split_coeff``."""
    if coeffs.dim() != 2 or coeffs.shape[1] != COEFF_DIM:
        raise ValueError(f"expected coefficients (B, {COEFF_DIM}), got {tuple(coeffs.shape)}")
    return {name: coeffs[:, span] for name, span in COEFF_SLICES.items()}


def image_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 RGB (H, W, 3) or (B, H, W, 3) (``align_img``'s crops) -> float32 (B, 3, H, W) in [0, 1], divided by
    255 in float64 and then rounded, as VideoReTalking and Deep3DFaceRecon's test script do."""
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"expected RGB images (H, W, 3) or (B, H, W, 3), got {array.shape}")
    return torch.from_numpy(array.astype(np.float64) / 255.0).float().permute(0, 3, 1, 2).contiguous()
