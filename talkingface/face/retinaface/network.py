"""RetinaFace with a ResNet-50 body (``cfg_re50``), in the state-dict layout of ``RetinaFace-R50.pth``.

The released file is a ``RetinaFace(cfg_re50)`` of biubug6/Pytorch_Retinaface as GPEN vendors it
(``face_detect/facemodels/retinaface.py`` and ``net.py``), saved from ``nn.DataParallel`` (every key starts with
``module.``; ``detector.load_retinaface_weights`` strips it). Its keys, in order:

- ``body.*``: torchvision's ``resnet50`` cut by ``IntermediateLayerGetter`` after ``layer4`` (``conv1``, ``bn1``,
  ``layer1..4``; no ``fc``), returning ``layer2``, ``layer3``, ``layer4`` (512, 1024, 2048 channels, strides 8, 16,
  32). Written out here (torchvision is not a dependency): the stride on the 3x3 convolution ("v1.5"), BatchNorm
  eps 1e-5, the first block of each stage with ``downsample.0`` (1x1 conv) / ``downsample.1`` (BatchNorm).
- ``fpn.output1..3`` (1x1 conv + BN + LeakyReLU to 256), ``fpn.merge1``, ``fpn.merge2`` (3x3 conv + BN + LeakyReLU);
  the coarser map is added after a nearest-neighbour upsampling to the finer one's size.
- ``ssh1..3``: SSH context modules, ``conv3X3`` (3x3 to 128, BN, no activation), ``conv5X5_1`` (3x3 to 64, BN,
  LeakyReLU), ``conv5X5_2`` (3x3, BN), ``conv7X7_2`` (3x3 on ``conv5X5_1``, BN, LeakyReLU), ``conv7x7_3`` (sic:
  lower-case x; 3x3, BN); the three branches are concatenated (128 + 64 + 64) and passed through ReLU.
- ``ClassHead.{0,1,2}.conv1x1`` (2 anchors x 2 classes), ``BboxHead.{0,1,2}.conv1x1`` (2 x 4),
  ``LandmarkHead.{0,1,2}.conv1x1`` (2 x 10): 1x1 convolutions with bias, their outputs permuted to NHWC and
  flattened to (B, H*W*2, k) per level and concatenated over the three levels.

Every convolution of the FPN and SSH is bias-free and followed by BatchNorm; the LeakyReLU slope is 0 for 256
channels (``out_channel <= 64`` gives 0.1, the mobilenet configuration). ``forward`` returns, as the original's
``phase='test'``: box offsets (B, N, 4), the softmax of the class logits (B, N, 2), landmark offsets (B, N, 10).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...nets.resnet import ResNet50
IN_CHANNEL = 256    # cfg_re50['in_channel']: the FPN inputs have 2x, 4x and 8x this many channels
OUT_CHANNEL = 256   # cfg_re50['out_channel']
ANCHORS = 2         # anchors per feature-map cell (two min_sizes per level)


class ResNet50Body(ResNet50):
    """The ResNet-50 trunk in torchvision's attribute order (the keys ``body.*`` of the release, no ``fc``);
    ``forward`` returns the outputs of ``layer2``, ``layer3`` and ``layer4``."""

    def __init__(self) -> None:
        super().__init__(use_last_fc=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.feature_maps(x)


def conv_bn(cin: int, cout: int, kernel: int, leaky: float | None) -> nn.Sequential:
    """Bias-free conv (stride 1, 'same' padding) + BatchNorm, + LeakyReLU(``leaky``) unless ``leaky`` is None:
    the keys ``.0.weight`` and ``.1.*`` of the release."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    if leaky is not None:
        layers.append(nn.LeakyReLU(negative_slope=leaky, inplace=True))
    return nn.Sequential(*layers)


def leaky_slope(channels: int) -> float:
    """The slope the original picks for its FPN and SSH: 0.1 for at most 64 channels, else 0."""
    return 0.1 if channels <= 64 else 0.0


class FPN(nn.Module):
    """Three lateral 1x1 projections, top-down nearest upsampling with addition, a 3x3 merge at the two finer
    levels."""

    def __init__(self, in_channels: tuple[int, int, int], out_channels: int) -> None:
        super().__init__()
        leaky = leaky_slope(out_channels)
        self.output1 = conv_bn(in_channels[0], out_channels, 1, leaky)
        self.output2 = conv_bn(in_channels[1], out_channels, 1, leaky)
        self.output3 = conv_bn(in_channels[2], out_channels, 1, leaky)
        self.merge1 = conv_bn(out_channels, out_channels, 3, leaky)
        self.merge2 = conv_bn(out_channels, out_channels, 3, leaky)

    def forward(self, features: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        fine = self.output1(features[0])
        middle = self.output2(features[1])
        coarse = self.output3(features[2])
        middle = self.merge2(middle + F.interpolate(coarse, size=list(middle.shape[2:]), mode="nearest"))
        fine = self.merge1(fine + F.interpolate(middle, size=list(fine.shape[2:]), mode="nearest"))
        return [fine, middle, coarse]


class SSH(nn.Module):
    """Single Stage Headless context module: 3x3, 5x5 (two 3x3) and 7x7 (three 3x3, sharing the first with the 5x5
    branch) receptive fields, concatenated, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels % 4:
            raise ValueError(f"SSH needs a multiple of 4 output channels, got {out_channels}")
        leaky = leaky_slope(out_channels)
        quarter = out_channels // 4
        self.conv3X3 = conv_bn(in_channels, out_channels // 2, 3, None)
        self.conv5X5_1 = conv_bn(in_channels, quarter, 3, leaky)
        self.conv5X5_2 = conv_bn(quarter, quarter, 3, None)
        self.conv7X7_2 = conv_bn(quarter, quarter, 3, leaky)
        self.conv7x7_3 = conv_bn(quarter, quarter, 3, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5_1 = self.conv5X5_1(x)
        out = torch.cat([self.conv3X3(x), self.conv5X5_2(branch5_1), self.conv7x7_3(self.conv7X7_2(branch5_1))],
                        dim=1)
        return F.relu(out)


class Head(nn.Module):
    """A 1x1 convolution predicting ``values`` numbers per anchor; output (B, H*W*anchors, values), cells in
    row-major order, the anchors of one cell adjacent (the order of the priors)."""

    def __init__(self, in_channels: int, values: int, anchors: int = ANCHORS) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(in_channels, anchors * values, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return out.view(out.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """RetinaFace-R50 (``cfg_re50``); ``forward(x)`` on (B, 3, H, W) BGR-minus-mean pixels gives
    ``(loc (B, N, 4), scores (B, N, 2) softmaxed, landmarks (B, N, 10))`` with N the number of priors
    (``boxes.prior_boxes``)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = ResNet50Body()
        self.fpn = FPN((IN_CHANNEL * 2, IN_CHANNEL * 4, IN_CHANNEL * 8), OUT_CHANNEL)
        self.ssh1 = SSH(OUT_CHANNEL, OUT_CHANNEL)
        self.ssh2 = SSH(OUT_CHANNEL, OUT_CHANNEL)
        self.ssh3 = SSH(OUT_CHANNEL, OUT_CHANNEL)
        self.ClassHead = nn.ModuleList(Head(OUT_CHANNEL, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(Head(OUT_CHANNEL, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(Head(OUT_CHANNEL, 10) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        levels = self.fpn(self.body(x))
        features = [self.ssh1(levels[0]), self.ssh2(levels[1]), self.ssh3(levels[2])]
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, features)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features)], dim=1)
        return loc, F.softmax(logits, dim=-1), landmarks
