"""VGG19 features for the perceptual loss of DINet and its successors, in torchvision's ``features.*`` key
layout.

DINet's release builds ``torchvision.models.vgg19(pretrained=True)`` (``vgg19-dcbb9e9d.pth``), normalises
its [0,1] RGB input with the ImageNet mean/std and keeps five slices ending at relu1_1, relu2_1,
relu3_1, relu4_1 and relu5_1 (``features[0:2]``, ``[2:7]``, ``[7:12]``, ``[12:21]``, ``[21:30]``).
torchvision is not needed: the layers are rebuilt here and the file's ``features.*`` tensors loaded.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...checkpoint import load_state_dict_strict, read_checkpoint
from ...errors import CheckpointError
from ...weights import TORCHVISION_LICENCE, KnownWeights

VGG19_WEIGHTS = KnownWeights(
    "vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    "perceptual loss of DINet and LawDNet (torchvision VGG19, ImageNet)", sha256_prefix="dcbb9e9d",
    licence=TORCHVISION_LICENCE)

# torchvision's cfg "E": channel counts, "M" = 2×2 max pooling.
VGG19_CONFIG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                       512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
SLICE_BOUNDS: tuple[int, ...] = (0, 2, 7, 12, 21, 30)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PERCEPTUAL_LOSS_WEIGHT = 10.0
"""``lamb_perception`` of DINet's train scripts: the generator loss adds 10 × ``perceptual_loss``."""


def vgg19_feature_layers() -> nn.Sequential:
    """torchvision's ``vgg19().features``: 3×3 convs with in-place ReLU and max pooling (37 modules)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in VGG19_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = int(item)
    return nn.Sequential(*layers)


class Vgg19Features(nn.Module):
    """Frozen VGG19 returning DINet's five slice outputs for a [0,1] RGB batch.

    The state dict is exactly torchvision's ``features.*`` (16 convs, 20,024,384 parameters); the
    normalisation constants are non-persistent buffers. Layers after relu5_1 exist only for the key
    layout and are never run.
    """

    def __init__(self, requires_grad: bool = False):
        super().__init__()
        self.features = vgg19_feature_layers()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for param in self.parameters():
            param.requires_grad_(requires_grad)

    @classmethod
    def pretrained(cls, path: str | Path | None = None, verify: bool = True) -> "Vgg19Features":
        """Load torchvision's ImageNet weights (``checkpoints/vgg19-dcbb9e9d.pth`` unless ``path``).

        Raises CheckpointError naming the file when it is absent, not the release (SHA-256 prefix),
        or does not hold VGG19's ``features.*`` tensors. ``classifier.*`` tensors are dropped.
        """
        path = Path(path) if path else VGG19_WEIGHTS.default_path()
        reason = VGG19_WEIGHTS.missing_reason(path)
        if reason:
            raise CheckpointError(f"{reason} (download {VGG19_WEIGHTS.source})")
        if verify:
            VGG19_WEIGHTS.verify(path)
        model = cls()
        model.load_torchvision_state_dict(read_checkpoint(path), str(path))
        return model

    def load_torchvision_state_dict(self, state_dict: object, source: str) -> None:
        """Strictly load the ``features.*`` part of a torchvision VGG19 state dict."""
        if not isinstance(state_dict, dict):
            raise CheckpointError(f"{source}: expected a VGG19 state dict, got {type(state_dict).__name__}")
        features = {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
        load_state_dict_strict(self, features, source)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """[relu1_1, relu2_1, relu3_1, relu4_1, relu5_1] of (B,3,H,W) images in [0,1]."""
        out = self.normalize(images)
        outputs = []
        for start, stop in zip(SLICE_BOUNDS[:-1], SLICE_BOUNDS[1:]):
            for index in range(start, stop):
                out = self.features[index](out)
            outputs.append(out)
        return outputs

    def perceptual_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """See :func:`perceptual_loss`."""
        return perceptual_loss(self, fake, real)


def half_resolution_pair(fake: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DINet's half-resolution copies: fake by 3×3/2 average pooling (padding 1, padding not counted),
    real by bilinear ×0.5 (align_corners False), as in ``train_DINet_frame.py``/``train_DINet_clip.py``."""
    fake_half = F.avg_pool2d(fake, 3, 2, 1, count_include_pad=False)
    real_half = F.interpolate(real, scale_factor=0.5, mode="bilinear", align_corners=False)
    return fake_half, real_half


def perceptual_loss(vgg: Vgg19Features, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """DINet's perceptual loss without its ×10 weight (:data:`PERCEPTUAL_LOSS_WEIGHT`).

    Mean L1 between VGG19 slice outputs of ``fake`` and ``real`` at full and half resolution: the sum
    of the 10 terms divided by 10. ``real`` features are computed without autograd.
    """
    fake_half, real_half = half_resolution_pair(fake, real)
    fake_full, fake_low = vgg(fake), vgg(fake_half)
    with torch.set_grad_enabled(torch.is_grad_enabled() and real.requires_grad):
        real_full, real_low = vgg(real), vgg(real_half)
    total = fake.new_zeros(())
    for i in range(len(fake_full)):  # the release's order: full then half resolution, slice by slice
        total = total + F.l1_loss(fake_full[i], real_full[i])
        total = total + F.l1_loss(fake_low[i], real_low[i])
    return total / (2 * len(fake_full))


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, C)`` Gram matrices normalised by ``C·H·W`` (style statistics)."""
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return flat @ flat.transpose(1, 2) / (channels * height * width)


def style_loss(vgg: Vgg19Features, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean L1 between the Gram matrices of the five VGG19 slice outputs of ``fake`` and ``real`` ([0, 1] RGB), the
    style term of PIRender's (imaginaire's) perceptual loss; ``real`` features without autograd."""
    fake_features = vgg(fake)
    with torch.set_grad_enabled(torch.is_grad_enabled() and real.requires_grad):
        real_features = vgg(real)
    total = fake.new_zeros(())
    for ours, theirs in zip(fake_features, real_features):
        total = total + F.l1_loss(gram_matrix(ours.float()), gram_matrix(theirs.float()))
    return total / len(fake_features)
