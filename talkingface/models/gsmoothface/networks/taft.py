"""TAFT's generator (GSmoothFace_TAFT ``Face2FaceGenerator``, a PIRender-derived editing network) in the state-dict
layout of the released checkpoint's ``net_G_ema`` (62 tensors, 6,101,251 parameters at the release's sizes).

The network maps a reference frame and the blended frame (the rendered 3DMM face pasted into the frame, both in
[-1, 1]) to the output frame in [-1, 1]:

- ``editing_net.encoder``: ``cat(reference, blended)`` (6 channels) → 7×7 conv + LayerNorm2d + LeakyReLU(0.1), then
  ``layers`` down blocks (3×3 conv + LayerNorm2d + LeakyReLU(0.1) + 2×2 average pooling); every level is kept;
- ``editing_net.decoder``: from the deepest level, per level ``num_res_blocks`` plain 3×3 convs (no activation, no
  skip: the release's ``use_adain=False`` blocks), nearest ×2 upsampling + 3×3 conv + LN + LReLU, plus a "jump"
  (3×3 conv + LN + LReLU) of the encoder's feature at that level; a 7×7 conv + tanh at the end;
- ``mapping_net``: a Conv1d stack over 3DMM coefficients (73 × T) into a 256-d descriptor. The release builds and
  saves it, but the editing net never reads a descriptor, so it has no effect on the output; it is kept so that the
  checkpoint loads strictly.

LayerNorm2d normalises each sample over (C, H, W) (``F.layer_norm``, eps 1e-5) with per-channel affine parameters
stored as (C, 1, 1). Image height and width must be multiples of ``2**layers``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NEGATIVE_SLOPE = 0.1


class LayerNorm2d(nn.Module):
    """Layer norm over (C, H, W) of each sample with a (C, 1, 1) scale and shift."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[1:]
        return F.layer_norm(x, shape, self.weight.expand(shape), self.bias.expand(shape))


def _conv_norm_act(in_channels: int, out_channels: int, kernel_size: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
              LayerNorm2d(out_channels), nn.LeakyReLU(NEGATIVE_SLOPE)]
    if pool:
        layers.append(nn.AvgPool2d(2))
    return nn.Sequential(*layers)


class ConvBlock(nn.Module):
    """conv + LayerNorm2d + LeakyReLU (+ 2×2 average pooling where ``pool``), optionally after nearest ×2
    upsampling; the layers sit in ``model`` (the release's key prefix)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, pool: bool = False,
                 upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.model = _conv_norm_act(in_channels, out_channels, kernel_size, pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.model(x)


class PlainConvs(nn.Module):
    """``count`` 3×3 convs in a row (``res0``, ``res1``, ...), no activation and no skip connection."""

    def __init__(self, count: int, channels: int) -> None:
        super().__init__()
        self.count = count
        for i in range(count):
            self.add_module(f"res{i}", nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.count):
            x = self.get_submodule(f"res{i}")(x)
        return x


class OutputBlock(nn.Module):
    """7×7 conv to RGB, then tanh."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(in_channels, out_channels, 7, padding=3), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _width(base: int, level: int, cap: int) -> int:
    return min(base * 2 ** level, cap)


class TaftEncoder(nn.Module):
    """First block at full size, then ``layers`` halvings; returns every level's feature, shallowest first."""

    def __init__(self, in_channels: int, base_nc: int, max_nc: int, layers: int) -> None:
        super().__init__()
        self.layers = layers
        self.first = ConvBlock(in_channels, base_nc, kernel_size=7)
        for i in range(layers):
            self.add_module(f"down{i}", ConvBlock(_width(base_nc, i, max_nc), _width(base_nc, i + 1, max_nc),
                                                  pool=True))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.first(x)]
        for i in range(self.layers):
            features.append(self.get_submodule(f"down{i}")(features[-1]))
        return features


class TaftDecoder(nn.Module):
    """From the deepest feature up: plain convs, upsampling block, plus the jump of the encoder's feature."""

    def __init__(self, out_channels: int, base_nc: int, max_nc: int, layers: int, num_res_blocks: int) -> None:
        super().__init__()
        self.layers = layers
        for i in reversed(range(layers)):
            wide, narrow = _width(base_nc, i + 1, max_nc), _width(base_nc, i, max_nc)
            self.add_module(f"up{i}", ConvBlock(wide, narrow, upsample=True))
            self.add_module(f"res{i}", PlainConvs(num_res_blocks, wide))
            self.add_module(f"jump{i}", ConvBlock(narrow, narrow))
        self.final = OutputBlock(base_nc, out_channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        out = features[-1]
        for i in reversed(range(self.layers)):
            out = self.get_submodule(f"up{i}")(self.get_submodule(f"res{i}")(out))
            out = self.get_submodule(f"jump{i}")(features[i]) + out
        return self.final(out)


class TaftEditingNet(nn.Module):
    """Encoder over ``cat(reference, blended)`` and decoder to an image."""

    def __init__(self, image_nc: int = 3, base_nc: int = 64, max_nc: int = 256, layers: int = 3,
                 num_res_blocks: int = 2) -> None:
        super().__init__()
        self.encoder = TaftEncoder(2 * image_nc, base_nc, max_nc, layers)
        self.decoder = TaftDecoder(image_nc, base_nc, max_nc, layers, num_res_blocks)

    def forward(self, reference: torch.Tensor, blended: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(torch.cat([reference, blended], 1)))


class TaftMappingNet(nn.Module):
    """The release's coefficient encoder: Conv1d(k7) then ``layers`` residual dilated Conv1d(k3, d3) steps (each
    trims 3 frames per side), averaged over time: (B, coeff_nc, T) → (B, descriptor_nc, 1). Not used by
    ``TaftGenerator.forward``."""

    def __init__(self, coeff_nc: int = 73, descriptor_nc: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.layers = layers
        self.first = nn.Sequential(nn.Conv1d(coeff_nc, descriptor_nc, 7))
        for i in range(layers):
            self.add_module(f"encoder{i}", nn.Sequential(nn.LeakyReLU(NEGATIVE_SLOPE),
                                                         nn.Conv1d(descriptor_nc, descriptor_nc, 3, dilation=3)))

    def forward(self, coefficients: torch.Tensor) -> torch.Tensor:
        out = self.first(coefficients)
        for i in range(self.layers):
            out = self.get_submodule(f"encoder{i}")(out) + out[:, :, 3:-3]
        return out.mean(dim=2, keepdim=True)


class TaftGenerator(nn.Module):
    """GSmoothFace's TAFT generator; defaults are the release's ``face_to_face_HDTF.yaml`` sizes.

    ``forward(reference, blended)``: (B, 3, H, W) each in [-1, 1] → (B, 3, H, W) in [-1, 1]; the official
    ``Face2FaceGenerator(...)(input_image=reference, rendered_image=blended)['fake_image']``.
    """

    def __init__(self, image_nc: int = 3, coeff_nc: int = 73, descriptor_nc: int = 256, base_nc: int = 64,
                 max_nc: int = 256, layers: int = 3, num_res_blocks: int = 2, mapping_layers: int = 3) -> None:
        super().__init__()
        self.mapping_net = TaftMappingNet(coeff_nc, descriptor_nc, mapping_layers)
        self.editing_net = TaftEditingNet(image_nc, base_nc, max_nc, layers, num_res_blocks)
        self.multiple = 2 ** layers

    def forward(self, reference: torch.Tensor, blended: torch.Tensor) -> torch.Tensor:
        if reference.shape != blended.shape:
            raise ValueError(f"reference {tuple(reference.shape)} and blended {tuple(blended.shape)} differ")
        if reference.ndim != 4 or reference.shape[-2] % self.multiple or reference.shape[-1] % self.multiple:
            raise ValueError(f"images must be (B, C, H, W) with H and W multiples of {self.multiple}, got "
                             f"{tuple(reference.shape)}")
        return self.editing_net(reference, blended)
