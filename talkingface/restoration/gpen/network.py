"""GPEN's ``FullGenerator`` (``face_model/gpen_model.py``): a U-shaped face restorer whose decoder is a StyleGAN2
generator. Same module tree, state-dict layout (blur kernels included: they are persistent buffers of the release)
and numerics as the release; GPEN-BFR-512 is ``FullGenerator(512, 512, 8, channel_multiplier=2, narrow=1)``.

How it computes (the release's behaviour, kept on purpose):

- the encoder ``ecd0 .. ecd{log2(size)-2}`` (a 1×1 conv, then blurred stride-2 3×3 convs down to 4×4) gives the
  style code through ``final_linear`` and, at every resolution, the feature map that the decoder's
  ``NoiseInjection`` layers use *in place of noise*: each decoder conv concatenates ``weight × feature`` to its
  output (``isconcat``), so nothing random is drawn at inference and the output is deterministic;
- the style code goes through the mapping network (``PixelNorm`` + ``n_mlp`` equalised linears, lr ×0.01) and the
  same code styles every layer (one style: no mixing, truncation 1);
- the decoder's upsampling convs are transposed stride-2 convs followed by a [1, 3, 3, 1] blur (×4), ``ToRGB``
  upsamples the skip image with ``upfirdn2d`` (up 2); ``blur_kernel`` reaches only the decoder's ``StyledConv``
  layers: the encoder's blurs and ``ToRGB``'s upsampling always use [1, 3, 3, 1], as the release's constructors
  pass it no further.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import ops

DEFAULT_BLUR = (1, 3, 3, 1)
DEMOD_EPS = 1e-8


def channel_widths(channel_multiplier: int = 2, narrow: float = 1) -> dict[int, int]:
    """Feature channels per resolution, as the release computes them (``int`` truncation)."""
    return {4: int(512 * narrow), 8: int(512 * narrow), 16: int(512 * narrow), 32: int(512 * narrow),
            64: int(256 * channel_multiplier * narrow), 128: int(128 * channel_multiplier * narrow),
            256: int(64 * channel_multiplier * narrow), 512: int(32 * channel_multiplier * narrow),
            1024: int(16 * channel_multiplier * narrow)}


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    """×2 upsampling by ``upfirdn2d`` with the kernel ×factor²; buffer ``kernel``."""

    def __init__(self, kernel: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", ops.make_kernel(kernel) * (factor ** 2))
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.upfirdn2d(x, self.kernel, up=self.factor, down=1, pad=self.pad)


class Blur(nn.Module):
    """FIR blur with ``pad``; buffer ``kernel`` (×upsample_factor² after a transposed conv)."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        weight = ops.make_kernel(kernel)
        if upsample_factor > 1:
            weight = weight * (upsample_factor ** 2)
        self.register_buffer("kernel", weight)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.upfirdn2d(x, self.kernel, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv with the weight scaled by 1/√fan_in at run time (equalised learning rate); ``weight``, ``bias``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear with the weight scaled by lr_mul/√in at run time and the bias by lr_mul; with ``activation`` the bias
    goes into the fused leaky ReLU (×√2) instead."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: str | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init)) if bias else None
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return ops.fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class ScaledLeakyReLU(nn.Module):
    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, negative_slope=self.negative_slope) * math.sqrt(2)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated conv: ``weight`` (1, out, in, k, k) × 1/√fan_in × ``modulation(style)`` per sample and
    input channel, demodulated (eps 1e-8) when ``demodulate``; ``upsample``: transposed stride-2 conv, then
    ``blur``; ``downsample``: ``blur``, then stride-2 conv. Grouped over the batch, as the release."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, downsample: bool = False,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR) -> None:
        super().__init__()
        self.kernel_size, self.in_channel, self.out_channel = kernel_size, in_channels, out_channels
        self.upsample, self.downsample = upsample, downsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, in_channels, height, width = x.shape
        k, out_channels = self.kernel_size, self.out_channel
        weight = self.scale * self.weight * self.modulation(style).view(batch, 1, in_channels, 1, 1)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + DEMOD_EPS)
            weight = weight * demod.view(batch, out_channels, 1, 1, 1)
        weight = weight.view(batch * out_channels, in_channels, k, k)
        if self.upsample:
            weight = weight.view(batch, out_channels, in_channels, k, k).transpose(1, 2)
            weight = weight.reshape(batch * in_channels, out_channels, k, k)
            out = F.conv_transpose2d(x.view(1, batch * in_channels, height, width), weight, padding=0, stride=2,
                                     groups=batch)
            return self.blur(out.view(batch, out_channels, *out.shape[2:]))
        if self.downsample:
            x = self.blur(x)
            out = F.conv2d(x.view(1, batch * in_channels, *x.shape[2:]), weight, padding=0, stride=2, groups=batch)
        else:
            out = F.conv2d(x.view(1, batch * in_channels, height, width), weight, padding=self.padding,
                           groups=batch)
        return out.view(batch, out_channels, *out.shape[2:])


class NoiseInjection(nn.Module):
    """Adds (or, with ``isconcat``, concatenates) ``weight × noise``; ``weight`` (1,). In ``FullGenerator`` the
    "noise" is the encoder's feature map at this resolution, never random numbers."""

    def __init__(self, isconcat: bool = True) -> None:
        super().__init__()
        self.isconcat = isconcat
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.isconcat:
            return torch.cat((image, self.weight * noise), dim=1)
        return image + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class StyledConv(nn.Module):
    """Modulated 3×3 conv, the injected feature, then the fused bias + leaky ReLU over (2×)out channels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR, demodulate: bool = True, isconcat: bool = True) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel, demodulate=demodulate)
        self.noise = NoiseInjection(isconcat)
        self.activate = ops.FusedLeakyReLU(out_channels * (2 if isconcat else 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """1×1 modulated conv to RGB without demodulation, plus ``bias`` (1, 3, 1, 1), plus the upsampled skip."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(DEFAULT_BLUR)  # the release passes no blur_kernel here
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Module):
    """GPEN's StyleGAN2 decoder: mapping network ``style``, constant 4×4 ``input``, ``conv1`` / ``to_rgb1``, then
    per resolution 8 .. ``size`` an upsampling and a plain ``StyledConv`` (``convs``) and a ``ToRGB``
    (``to_rgbs``). ``forward(z (B, style_dim), features)`` maps ``z`` through ``style`` and styles every layer
    with the result; ``features`` are the 2·log2(size) − 3 maps the convs inject (4×4 first)."""

    def __init__(self, size: int, style_dim: int, n_mlp: int, channel_multiplier: int = 2,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR, lr_mlp: float = 0.01, isconcat: bool = True,
                 narrow: float = 1) -> None:
        super().__init__()
        self.size, self.n_mlp, self.style_dim = size, n_mlp, style_dim
        self.feat_multiplier = 2 if isconcat else 1
        self.style = nn.Sequential(PixelNorm(), *(EqualLinear(style_dim, style_dim, lr_mul=lr_mlp,
                                                              activation="fused_lrelu") for _ in range(n_mlp)))
        self.channels = channel_widths(channel_multiplier, narrow)
        mult = self.feat_multiplier
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel,
                                isconcat=isconcat)
        self.to_rgb1 = ToRGB(self.channels[4] * mult, style_dim, upsample=False)
        self.log_size = int(math.log(size, 2))
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channels = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channels = self.channels[2 ** i]
            self.convs.append(StyledConv(in_channels * mult, out_channels, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel, isconcat=isconcat))
            self.convs.append(StyledConv(out_channels * mult, out_channels, 3, style_dim, blur_kernel=blur_kernel,
                                         isconcat=isconcat))
            self.to_rgbs.append(ToRGB(out_channels * mult, style_dim))
            in_channels = out_channels

    def forward(self, z: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        w = self.style(z)
        out = self.conv1(self.input(z.shape[0]), w, features[0])
        skip = self.to_rgb1(out, w)
        for index, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * index](out, w, features[2 * index + 1])
            out = self.convs[2 * index + 1](out, w, features[2 * index + 2])
            skip = to_rgb(out, w, skip)
        return skip


class ConvLayer(nn.Sequential):
    """[``Blur`` when downsampling], ``EqualConv2d`` (stride 2 when downsampling), then ``FusedLeakyReLU`` (or
    ``ScaledLeakyReLU`` without bias); the conv has its own bias only when not activated."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR, bias: bool = True, activate: bool = True) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, padding=padding, stride=stride,
                                  bias=bias and not activate))
        if activate:
            layers.append(ops.FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU(0.2))
        super().__init__(*layers)


class FullGenerator(nn.Module):
    """GPEN: encoder ``ecd0 ..`` + ``final_linear`` (to a style_dim code) + ``generator`` (the StyleGAN2 decoder
    fed the encoder's features). ``forward(x (B, 3, size, size) RGB in [-1, 1]) -> (B, 3, size, size)`` RGB,
    nominally [-1, 1] (not clamped). The release returns ``(image, None)``; this returns the image."""

    def __init__(self, size: int, style_dim: int, n_mlp: int, channel_multiplier: int = 2,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR, lr_mlp: float = 0.01, isconcat: bool = True,
                 narrow: float = 1) -> None:
        super().__init__()
        channels = channel_widths(channel_multiplier, narrow)
        self.size = size
        self.log_size = int(math.log(size, 2))
        self.generator = Generator(size, style_dim, n_mlp, channel_multiplier=channel_multiplier,
                                   blur_kernel=blur_kernel, lr_mlp=lr_mlp, isconcat=isconcat, narrow=narrow)
        self.ecd0 = nn.Sequential(ConvLayer(3, channels[size], 1))
        in_channels = channels[size]
        self.names = [f"ecd{i}" for i in range(self.log_size - 1)]
        for i in range(self.log_size, 2, -1):  # the release passes no blur_kernel to the encoder
            out_channels = channels[2 ** (i - 1)]
            setattr(self, self.names[self.log_size - i + 1],
                    nn.Sequential(ConvLayer(in_channels, out_channels, 3, downsample=True)))
            in_channels = out_channels
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 4 * 4, style_dim, activation="fused_lrelu"))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The style code (B, style_dim) and the encoder's feature maps, largest first."""
        features = []
        for name in self.names:
            x = getattr(self, name)(x)
            features.append(x)
        return self.final_linear(x.reshape(x.shape[0], -1)), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code, features = self.encode(x)
        # each map twice, smallest first, less the first: 4, 8, 8, 16, 16, ..., size, size (the release's order)
        injected = [f for f in reversed(features) for _ in range(2)][1:]
        return self.generator(code, injected)
