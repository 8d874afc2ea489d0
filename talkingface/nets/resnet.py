"""ResNet-50 in torchvision's layout and numerics, without torchvision (the trunk of Deep3DFaceRecon's regressor and of
RetinaFace-R50's detector).

The state-dict keys are torchvision's: ``conv1``, ``bn1``, ``layer1..4.{i}.conv1/bn1/conv2/bn2/conv3/bn3`` and, in
the first block of each stage, ``downsample.0`` (1x1 conv) / ``downsample.1`` (BatchNorm); ``fc`` only when
``use_last_fc``. The stride sits on the 3x3 convolution (torchvision's "v1.5"), BatchNorm has eps 1e-5, the stem is
a 7x7/2 convolution (padding 3, no bias) and a 3x3/2 max pool (padding 1). Deep3DFaceRecon's copy
(``models/networks.py``) differs from torchvision only in ``use_last_fc``: without it ``forward`` returns the
average-pooled features (B, 2048, 1, 1), unflattened.
"""
from __future__ import annotations

import torch
from torch import nn

RESNET50_LAYERS = (3, 4, 6, 3)  # Bottleneck blocks per stage
EXPANSION = 4  # a Bottleneck's output channels / its width
FEATURES = 512 * EXPANSION  # 2048: channels after layer4


class Bottleneck(nn.Module):
    """1x1 (width) -> 3x3 (width, stride) -> 1x1 (4 x width), each with BatchNorm; ReLU after the first two and
    after the residual sum. ``downsample`` (1x1 conv with the stride + BatchNorm) adapts the identity."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 (Bottleneck, 3/4/6/3 blocks). Without ``use_last_fc`` (Deep3DFaceRecon's regressor) the output is
    the average-pooled (B, 2048, 1, 1) feature map and there is no ``fc``; with it, ``fc`` maps the flattened
    features to ``num_classes``. Initialisation as torchvision's (Kaiming-normal fan-out convolutions, BatchNorm
    weight 1 / bias 0, no zero-initialised residual)."""

    def __init__(self, use_last_fc: bool = False, num_classes: int = 1000):
        super().__init__()
        self.use_last_fc = use_last_fc
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, RESNET50_LAYERS[0], stride=1)
        self.layer2 = self._make_layer(128, RESNET50_LAYERS[1], stride=2)
        self.layer3 = self._make_layer(256, RESNET50_LAYERS[2], stride=2)
        self.layer4 = self._make_layer(512, RESNET50_LAYERS[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        if use_last_fc:
            self.fc = nn.Linear(FEATURES, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * EXPANSION:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * EXPANSION, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * EXPANSION))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * EXPANSION
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def feature_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The outputs of ``layer2``, ``layer3`` and ``layer4`` (torchvision's ``IntermediateLayerGetter`` with
        those three, as RetinaFace's body uses it)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer2(self.layer1(x))
        c3 = self.layer3(c2)
        return c2, c3, self.layer4(c3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        if self.use_last_fc:
            x = self.fc(torch.flatten(x, 1))
        return x
