"""The LPIPS networks: torchvision-layout feature extractors, the v0.1 linear heads, and the distance.

Backbones keep torchvision's module indices (``features.0.weight`` ...) so that torchvision's released
ImageNet files load strictly once their ``classifier.*`` keys are dropped. Each backbone returns the
activations the ``lpips`` package taps: the outputs of the feature slices ending at ``taps``.
"""
from __future__ import annotations

import torch
from torch import nn

NORMALIZE_EPS = 1e-10
# lpips ScalingLayer constants (float32, as the package registers them)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def _conv_relu(in_channels: int, out_channels: int, **kwargs) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, **kwargs), nn.ReLU()]


class TappedFeatures(nn.Module):
    """A ``features`` ``nn.Sequential`` run up to its last tap, returning the output after each tap.

    ``taps`` are exclusive slice ends: tap ``t`` is the output of ``features[:t]``.
    """

    taps: tuple[int, ...] = ()
    channels: tuple[int, ...] = ()

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for index, layer in enumerate(self.features[: self.taps[-1]], start=1):
            x = layer(x)
            if index in self.taps:
                outputs.append(x)
        return outputs


class AlexNetFeatures(TappedFeatures):
    """torchvision ``alexnet().features``; taps relu1..relu5 (slices [0:2], [2:5], [5:8], [8:10], [10:12])."""

    taps = (2, 5, 8, 10, 12)
    channels = (64, 192, 384, 256, 256)

    def __init__(self):
        super().__init__([
            *_conv_relu(3, 64, kernel_size=11, stride=4, padding=2), nn.MaxPool2d(3, 2),
            *_conv_relu(64, 192, kernel_size=5, padding=2), nn.MaxPool2d(3, 2),
            *_conv_relu(192, 384, kernel_size=3, padding=1),
            *_conv_relu(384, 256, kernel_size=3, padding=1),
            *_conv_relu(256, 256, kernel_size=3, padding=1), nn.MaxPool2d(3, 2),
        ])


VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16Features(TappedFeatures):
    """torchvision ``vgg16().features`` (config D, no BatchNorm); taps relu1_2, relu2_2, relu3_3,
    relu4_3, relu5_3 (slices [0:4], [4:9], [9:16], [16:23], [23:30])."""

    taps = (4, 9, 16, 23, 30)
    channels = (64, 128, 256, 512, 512)

    def __init__(self):
        layers: list[nn.Module] = []
        in_channels = 3
        for item in VGG16_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += _conv_relu(in_channels, int(item), kernel_size=3, padding=1)
                in_channels = int(item)
        super().__init__(layers)


class Fire(nn.Module):
    """SqueezeNet's fire module with torchvision's attribute names."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU()
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet11Features(TappedFeatures):
    """torchvision ``squeezenet1_1().features``; seven taps as the ``lpips`` package's ``squeeze`` net."""

    taps = (2, 5, 8, 10, 11, 12, 13)
    channels = (64, 128, 256, 384, 384, 512, 512)

    def __init__(self):
        pool = dict(kernel_size=3, stride=2, ceil_mode=True)
        super().__init__([
            *_conv_relu(3, 64, kernel_size=3, stride=2), nn.MaxPool2d(**pool),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), nn.MaxPool2d(**pool),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), nn.MaxPool2d(**pool),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
        ])


BACKBONES: dict[str, type[TappedFeatures]] = {
    "alex": AlexNetFeatures, "vgg": VGG16Features, "squeeze": SqueezeNet11Features}


class LinearHead(nn.Module):
    """A 1x1 convolution to one channel, no bias; ``model.0`` is the (eval-time no-op) dropout."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LinearHeads(nn.Module):
    """``lin0 … lin{L-1}``: state-dict keys ``lin{k}.model.1.weight`` as in ``lpips/weights/v0.1/<net>.pth``."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        for k, c in enumerate(channels):
            self.add_module(f"lin{k}", LinearHead(c))

    def forward(self, diffs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [head(d) for head, d in zip(self.children(), diffs)]


def unit_normalize(x: torch.Tensor, eps: float = NORMALIZE_EPS) -> torch.Tensor:
    """Divide each feature vector (over channels) by its L2 norm plus ``eps``."""
    return x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + eps)


class LPIPSNetwork(nn.Module):
    """``(B, 3, H, W)`` float pairs in [-1, 1] -> ``(B,)`` LPIPS v0.1 distances."""

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"unknown LPIPS net {net!r}; choose one of {sorted(BACKBONES)}")
        self.net_name = net
        self.backbone = BACKBONES[net]()
        self.heads = LinearHeads(self.backbone.channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        feats_a = self.backbone((a - self.shift) / self.scale)
        feats_b = self.backbone((b - self.shift) / self.scale)
        diffs = [(unit_normalize(fa) - unit_normalize(fb)) ** 2 for fa, fb in zip(feats_a, feats_b)]
        total = torch.zeros(a.shape[0], 1, device=a.device, dtype=a.dtype)
        for response in self.heads(diffs):  # summed layer by layer, in the package's order
            total = total + response.mean(dim=(2, 3))
        return total.flatten()
