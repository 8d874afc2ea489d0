"""The ``iresnet`` backbones of insightface's ``arcface_torch`` (ArcFace identity embeddings), in the state-dict
layout of its released ``backbone.pth`` files.

Written from the module tree of ``arcface_torch/backbones/iresnet.py`` as VideoReTalking vendors it
(``third_part/face3d/models/arcface_torch``, OpenTalker/video-retalking d32e8e5; Deep3DFaceRecon's ``net_recog``):

- stem: ``conv1`` (3x3, 3 -> 64, stride 1, no bias), ``bn1``, ``prelu`` (64 slopes);
- ``layer1..4`` (64, 128, 256, 512 channels), each stage halving the resolution (112 -> 56 -> 28 -> 14 -> 7) in its
  first block. A block (``IBasicBlock``) is ``bn1 -> conv1 (3x3) -> bn2 -> prelu -> conv2 (3x3, the stage's stride)
  -> bn3`` plus the shortcut, with no activation after the sum; the first block of each stage has ``downsample.0``
  (1x1 conv with the stride, no bias) and ``downsample.1`` (BatchNorm) on the shortcut;
- head: ``bn2`` (BatchNorm2d(512)), flatten (512 x 7 x 7 = 25088: ``fc_scale`` 7 * 7, so the input must be
  112 x 112), ``dropout`` (p=0 in every released configuration), ``fc`` (25088 -> 512 with bias), ``features``
  (BatchNorm1d(512) whose weight is set to 1.0 and frozen, ``requires_grad=False``, as the original does; it is
  still a key of the state dict).

Every BatchNorm has eps 1e-5 and PyTorch's default momentum. ``fp16=True`` runs the convolutional part under CUDA
autocast and casts to float32 before ``fc`` (the original's ``torch.cuda.amp.autocast(self.fp16)``, which leaves
CPU tensors alone); the released files were trained with it but hold float32 tensors, and Deep3DFaceRecon builds
the network with ``fp16=False``.

Input: (B, 3, 112, 112) RGB scaled as arcface_torch's ``inference.py`` does, ``(x / 255 - 0.5) / 0.5`` for 0..255
pixels (``normalize`` here takes [0, 1] images: ``2 x - 1``, Deep3DFaceRecon's ``RecogNetWrapper.preprocess``).
Output: (B, 512) embeddings, not L2-normalised.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

INPUT_SIZE = 112          # the released models' input side; fc expects 512 x 7 x 7 after four stride-2 stages
EMBEDDING_SIZE = 512      # num_features of every released backbone
BN_EPS = 1e-5
DEPTHS = {"r18": (2, 2, 2, 2), "r34": (3, 4, 6, 3), "r50": (3, 4, 14, 3), "r100": (3, 13, 30, 3),
          "r200": (6, 26, 60, 6)}  # blocks per stage, by arcface_torch's get_model names


def normalize(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB -> the network's input range [-1, 1]: ``(x - 0.5) / 0.5``, i.e. ``2 x - 1``."""
    return (images - 0.5) / 0.5


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """BN -> 3x3 conv -> BN -> PReLU -> 3x3 conv (with the stride) -> BN, plus the (downsampled) input."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("IBasicBlock supports only groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("IBasicBlock does not support dilation > 1")
        self.bn1 = nn.BatchNorm2d(inplanes, eps=BN_EPS)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return residual + shortcut


class IResNet(nn.Module):
    """arcface_torch's ``IResNet(IBasicBlock, layers, ...)``: (B, 3, 112, 112) in [-1, 1] -> (B, 512).

    Keyword arguments as the original's: ``dropout`` (before ``fc``), ``num_features``, ``zero_init_residual``
    (zeroes each block's ``bn2`` weight, as the original does; it matters only for training from scratch),
    ``groups`` / ``width_per_group`` (only 1 / 64), ``replace_stride_with_dilation`` (only all False: with the
    original's blocks any True raises), ``fp16``.
    """

    fc_scale = 7 * 7

    def __init__(self, block: type[IBasicBlock], layers: Sequence[int], dropout: float = 0.0,
                 num_features: int = EMBEDDING_SIZE, zero_init_residual: bool = False, groups: int = 1,
                 width_per_group: int = 64, replace_stride_with_dilation: Sequence[bool] | None = None,
                 fp16: bool = False) -> None:
        super().__init__()
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = (False, False, False)
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(f"replace_stride_with_dilation should be None or have 3 entries, got "
                             f"{replace_stride_with_dilation}")
        if any(replace_stride_with_dilation):
            raise NotImplementedError("IBasicBlock does not support dilation > 1")
        if len(layers) != 4:
            raise ValueError(f"IResNet takes 4 stage depths, got {list(layers)}")
        self.fp16 = fp16
        self.groups = groups
        self.base_width = width_per_group
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=BN_EPS)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1])
        self.layer3 = self._make_layer(block, 256, layers[2])
        self.layer4 = self._make_layer(block, 512, layers[3])
        self.bn2 = nn.BatchNorm2d(512 * block.expansion, eps=BN_EPS)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(512 * block.expansion * self.fc_scale, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=BN_EPS)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for module in self.modules():  # the original's initialisation (fc keeps PyTorch's default)
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1.0)
                nn.init.constant_(module.bias, 0.0)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, IBasicBlock):
                    nn.init.constant_(module.bn2.weight, 0.0)

    def _make_layer(self, block: type[IBasicBlock], planes: int, blocks: int, stride: int = 2) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion, eps=BN_EPS))
        stage = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
        self.inplanes = planes * block.expansion
        stage += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width)
                  for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 112, 112) -> the flattened (B, 25088) features after ``bn2`` and ``dropout``."""
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.dropout(torch.flatten(self.bn2(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", enabled=self.fp16 and x.is_cuda):
            x = self.trunk(x)
        return self.features(self.fc(x.float() if self.fp16 else x))


def iresnet(name: str, **kwargs) -> IResNet:
    """The backbone arcface_torch's ``get_model(name, **kwargs)`` builds for ``r18``, ``r34``, ``r50``, ``r100`` or
    ``r200``."""
    if name not in DEPTHS:
        raise ValueError(f"unknown iresnet {name!r}: expected one of {', '.join(DEPTHS)}")
    return IResNet(IBasicBlock, DEPTHS[name], **kwargs)


def iresnet18(**kwargs) -> IResNet:
    """IResNet-18: stages of 2, 2, 2, 2 blocks."""
    return iresnet("r18", **kwargs)


def iresnet34(**kwargs) -> IResNet:
    """IResNet-34: stages of 3, 4, 6, 3 blocks."""
    return iresnet("r34", **kwargs)


def iresnet50(**kwargs) -> IResNet:
    """IResNet-50: stages of 3, 4, 14, 3 blocks (Deep3DFaceRecon's ``net_recog`` default)."""
    return iresnet("r50", **kwargs)


def iresnet100(**kwargs) -> IResNet:
    """IResNet-100: stages of 3, 13, 30, 3 blocks (``ms1mv3_arcface_r100_fp16``)."""
    return iresnet("r100", **kwargs)


def iresnet200(**kwargs) -> IResNet:
    """IResNet-200: stages of 6, 26, 60, 6 blocks."""
    return iresnet("r200", **kwargs)
