"""StyleGAN2 "clean" building blocks and generator (GFPGAN's ``stylegan2_clean_arch.py``, the plain-PyTorch StyleGAN2
without compiled ops), with the same state-dict layout and numerics.

Shared: GFPGANv1.3's decoder (``talkingface.restoration.gfpgan``) is a ``StyleGAN2GeneratorClean`` with SFT, and
VideoReTalking's E-Net (``talkingface.models.videoretalking.networks.enet``) is built of these ``StyleConv`` /
``ToRGB`` (its ``StyleConv(cast_noise=True)``) with GFPGAN's ``ResBlock(mode='down')`` and the ``NoiseMode`` check.

- ``ModulatedConv2d``: the weight ``(1, out, in, k, k)`` scaled per sample by ``modulation(style)``, demodulated
  by ``rsqrt(sum of squares over (in, k, k) + eps)`` with ``eps = 1e-8``, the input resampled ×2 / ×½ (bilinear,
  ``align_corners=False``) *before* a grouped convolution, no bias;
- ``StyleConv``: the modulated conv ×√2, plus ``weight`` × a noise image ``(B, 1, H, W)``, plus ``bias``,
  LeakyReLU(0.2);
- ``ToRGB``: a 1×1 modulated conv without demodulation, plus ``bias``, plus the previous RGB (bilinear ×2);
- ``StyleGAN2GeneratorClean``: the style MLP (``NormStyleCode`` then ``num_mlp`` × (Linear, LeakyReLU(0.2))), a
  learnt 4×4 constant, ``style_conv1`` / ``to_rgb1`` at 4×4 and two ``StyleConv`` and a ``ToRGB`` per doubling.

Noise: when no noise image is given, the release draws one per ``StyleConv`` call with
``out.new_empty(B, 1, H, W).normal_()`` (the global generator, the network's dtype and device). Here
``noise="random"`` makes the same draws, in the same order and shapes (``StyleGAN2GeneratorClean.layer_noise``),
so under the same seed the output equals the release's; ``"zero"`` adds no noise (deterministic; no draw);
``"stored"`` uses the buffers ``noises.noise{i}`` (the release's ``randomize_noise=False``); or a sequence of
``(B or 1, 1, H, W)`` tensors, one per layer.
"""
from __future__ import annotations

import math
import random
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

DEMODULATION_EPS = 1e-8
NOISE_MODES = ("random", "zero", "stored")
Noise = Union[str, Sequence[torch.Tensor], None]
SAMPLE_MODES = (None, "upsample", "downsample")


def channel_table(narrow: float = 1.0, channel_multiplier: int = 2) -> dict[str, int]:
    """The release's channels per resolution: 512 up to 32×32, then ``(256, 128, 64, 32, 16) × multiplier`` for
    64 ... 1024, all times ``narrow`` (truncated to int)."""
    channels = {str(size): int(512 * narrow) for size in (4, 8, 16, 32)}
    for size, base in ((64, 256), (128, 128), (256, 64), (512, 32), (1024, 16)):
        channels[str(size)] = int(base * channel_multiplier * narrow)
    return channels


def _resample(x: torch.Tensor, scale_factor: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale_factor, mode="bilinear", align_corners=False)


class NoiseMode:
    """A module's noise-mode attribute (``noise = NoiseMode(modes)`` in the class body), checked whenever it is set:
    anything but one of ``modes`` raises ``ValueError``. The instance keeps the mode as ``_<name>``."""

    def __init__(self, modes: Sequence[str] = NOISE_MODES):
        self.modes = tuple(modes)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.private = name, f"_{name}"

    def __get__(self, instance, owner=None):
        return self if instance is None else getattr(instance, self.private)

    def __set__(self, instance, mode: str) -> None:
        if mode not in self.modes:
            raise ValueError(f"{self.name}={mode!r}: expected one of {', '.join(self.modes)}")
        instance.__dict__[self.private] = mode


class NormStyleCode(nn.Module):
    """``x · rsqrt(mean(x², dim=1) + 1e-8)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution (no bias). ``forward(x (B, in, H, W), style (B, num_style_feat))``.

    ``sample_mode``: ``None``, ``"upsample"`` or ``"downsample"`` (bilinear ×2 / ×½ of the input first).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, sample_mode: str | None = None, eps: float = DEMODULATION_EPS):
        super().__init__()
        if sample_mode not in SAMPLE_MODES:
            raise ValueError(f"sample_mode={sample_mode!r}: expected one of {SAMPLE_MODES}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.sample_mode, self.eps = demodulate, sample_mode, eps
        self.modulation = nn.Linear(num_style_feat, in_channels, bias=True)
        with torch.no_grad():  # the release's init: Kaiming-normal (fan-in, linear gain), bias 1
            nn.init.kaiming_normal_(self.modulation.weight, a=0, mode="fan_in", nonlinearity="linear")
            self.modulation.bias.fill_(1.0)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size)
                                   / math.sqrt(in_channels * kernel_size ** 2))
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[:2]
        weight = self.weight * self.modulation(style).view(batch, 1, channels, 1, 1)  # (B, out, in, k, k)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)
            weight = weight * demod.view(batch, self.out_channels, 1, 1, 1)
        weight = weight.view(batch * self.out_channels, channels, self.kernel_size, self.kernel_size)
        if self.sample_mode == "upsample":
            x = _resample(x, 2)
        elif self.sample_mode == "downsample":
            x = _resample(x, 0.5)
        height, width = x.shape[2:]
        out = F.conv2d(x.reshape(1, batch * channels, height, width), weight, padding=self.padding, groups=batch)
        return out.view(batch, self.out_channels, *out.shape[2:])

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
                f"demodulate={self.demodulate}, sample_mode={self.sample_mode}")


class StyleConv(nn.Module):
    """Modulated conv ×√2, plus ``weight`` × noise, plus ``bias``, LeakyReLU(0.2).

    ``cast_noise``: a given noise tensor is first cast to the modulated conv's output dtype (VideoReTalking's E-Net
    does so); by default it is added as given, as in the release (type promotion decides the result's dtype).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, sample_mode: str | None = None, cast_noise: bool = False):
        super().__init__()
        self.cast_noise = cast_noise
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, kernel_size, num_style_feat,
                                              demodulate=demodulate, sample_mode=sample_mode)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                noise: str | torch.Tensor = "random") -> torch.Tensor:
        """``noise``: ``"random"`` (one N(0, 1) draw ``out.new_empty(B, 1, H, W).normal_()``: the release's
        ``noise=None``), ``"zero"`` (no noise) or a ``(B or 1, 1, H, W)`` tensor."""
        out = self.modulated_conv(x, style) * 2 ** 0.5
        if isinstance(noise, str):
            if noise == "random":
                noise = out.new_empty(out.shape[0], 1, *out.shape[2:]).normal_()
            elif noise == "zero":
                noise = None
            else:
                raise ValueError(f"noise={noise!r}: expected 'random', 'zero' or a tensor")
        if isinstance(noise, torch.Tensor):
            out = out + self.weight * (noise.to(out.dtype) if self.cast_noise else noise)
        return F.leaky_relu(out + self.bias, negative_slope=0.2)


class ToRGB(nn.Module):
    """1×1 modulated conv to RGB (no demodulation) plus ``bias``, plus ``skip`` (bilinear ×2 when ``upsample``)."""

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True):
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(in_channels, 3, kernel_size=1, num_style_feat=num_style_feat,
                                              demodulate=False, sample_mode=None)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            out = out + (_resample(skip, 2) if self.upsample else skip)
        return out


class ConstantInput(nn.Module):
    """A learnt ``(1, C, size, size)`` input, repeated over the batch."""

    def __init__(self, num_channel: int, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, num_channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.repeat(batch, 1, 1, 1)


class StyleGAN2GeneratorClean(nn.Module):
    """The release's ``StyleGAN2GeneratorClean(out_size, num_style_feat=512, num_mlp=8, channel_multiplier=2,
    narrow=1)``: ``forward(styles, ...) -> (image (B, 3, out, out), latent or None)``.

    ``noise`` (here and in ``forward``): see the module docstring; the default is the attribute ``noise``
    (``"random"`` unless set).
    """

    noise = NoiseMode(NOISE_MODES)

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8, channel_multiplier: int = 2,
                 narrow: float = 1, noise: str = "random"):
        super().__init__()
        self.num_style_feat = num_style_feat
        layers: list[nn.Module] = [NormStyleCode()]
        for _ in range(num_mlp):
            layers += [nn.Linear(num_style_feat, num_style_feat, bias=True), nn.LeakyReLU(negative_slope=0.2)]
        self.style_mlp = nn.Sequential(*layers)
        with torch.no_grad():  # the release's init: Kaiming-normal (fan-in, LeakyReLU(0.2) gain), bias 0
            for layer in self.style_mlp:
                if isinstance(layer, nn.Linear):
                    nn.init.kaiming_normal_(layer.weight, a=0.2, mode="fan_in", nonlinearity="leaky_relu")
                    layer.bias.zero_()
        channels = self.channels = channel_table(narrow, channel_multiplier)
        self.constant_input = ConstantInput(channels["4"], size=4)
        self.style_conv1 = StyleConv(channels["4"], channels["4"], 3, num_style_feat, demodulate=True)
        self.to_rgb1 = ToRGB(channels["4"], num_style_feat, upsample=False)
        self.log_size = int(math.log(out_size, 2))
        self.num_layers = (self.log_size - 2) * 2 + 1  # StyleConvs
        self.num_latent = self.log_size * 2 - 2  # style vectors: one per StyleConv and ToRGB, shared at the ends
        self.style_convs, self.to_rgbs, self.noises = nn.ModuleList(), nn.ModuleList(), nn.Module()
        for index in range(self.num_layers):
            resolution = 2 ** ((index + 5) // 2)
            self.noises.register_buffer(f"noise{index}", torch.randn(1, 1, resolution, resolution))
        in_channels = channels["4"]
        for level in range(3, self.log_size + 1):
            out_channels = channels[f"{2 ** level}"]
            self.style_convs.append(StyleConv(in_channels, out_channels, 3, num_style_feat, demodulate=True,
                                              sample_mode="upsample"))
            self.style_convs.append(StyleConv(out_channels, out_channels, 3, num_style_feat, demodulate=True))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat, upsample=True))
            in_channels = out_channels
        self.noise = noise

    def noise_shapes(self, batch: int) -> list[tuple[int, int, int, int]]:
        """The noise image of each ``StyleConv`` in call order: 4×4, then two per resolution 8 ... out."""
        sizes = [4] + [2 ** level for level in range(3, self.log_size + 1) for _ in range(2)]
        return [(batch, 1, size, size) for size in sizes]

    def layer_noise(self, noise: Noise, batch: int, like: torch.Tensor) -> list[torch.Tensor | str]:
        """One noise image (or ``"zero"``: none added) per ``StyleConv``, in call order. ``"random"`` draws them as
        the release does (``new_empty(B, 1, H, W).normal_()`` in ``like``'s dtype and device, global generator, layer
        order): nothing else draws random numbers between its calls, so the numbers are the release's."""
        noise = self.noise if noise is None else noise
        if isinstance(noise, str):
            if noise == "random":
                return [like.new_empty(shape).normal_() for shape in self.noise_shapes(batch)]
            if noise == "zero":
                return ["zero"] * self.num_layers
            if noise == "stored":
                return [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)]
            raise ValueError(f"noise={noise!r}: expected one of {', '.join(NOISE_MODES)} or a list of tensors")
        noise = list(noise)
        if len(noise) != self.num_layers:
            raise ValueError(f"noise: expected {self.num_layers} images (one per StyleConv), got {len(noise)}")
        return noise

    def latent_codes(self, styles: Sequence[torch.Tensor], input_is_latent: bool = False, truncation: float = 1,
                     truncation_latent: torch.Tensor | None = None,
                     inject_index: int | None = None) -> torch.Tensor:
        """``(B, num_latent, num_style_feat)``: the style MLP (unless ``input_is_latent``), truncation, and one code
        repeated, a per-layer code ``(B, num_latent, F)`` as it is, or two codes mixed at ``inject_index`` (drawn
        with ``random.randint(1, num_latent - 1)`` when None, as the release)."""
        if not input_is_latent:
            styles = [self.style_mlp(s) for s in styles]
        if truncation < 1:
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        if len(styles) == 1:
            if styles[0].ndim < 3:
                return styles[0].unsqueeze(1).repeat(1, self.num_latent, 1)
            return styles[0]
        if len(styles) == 2:
            if inject_index is None:
                inject_index = random.randint(1, self.num_latent - 1)
            first = styles[0].unsqueeze(1).repeat(1, inject_index, 1)
            second = styles[1].unsqueeze(1).repeat(1, self.num_latent - inject_index, 1)
            return torch.cat([first, second], 1)
        raise ValueError(f"styles: one or two style codes, got {len(styles)}")

    def synthesize(self, latent: torch.Tensor, noise: Noise = None,
                   modulate: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """``latent (B, num_latent, F)`` -> the image. ``modulate(stage, out)``, when given, transforms the output of
        each stage's first (upsampling) ``StyleConv`` (GFPGAN's SFT)."""
        batch = latent.shape[0]
        out = self.constant_input(batch)
        layer_noise = self.layer_noise(noise, batch, out)
        out = self.style_conv1(out, latent[:, 0], noise=layer_noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for stage, to_rgb in enumerate(self.to_rgbs):
            i = 2 * stage + 1
            out = self.style_convs[2 * stage](out, latent[:, i], noise=layer_noise[i])
            if modulate is not None:
                out = modulate(stage, out)
            out = self.style_convs[2 * stage + 1](out, latent[:, i + 1], noise=layer_noise[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
        return skip

    def forward(self, styles: Sequence[torch.Tensor], input_is_latent: bool = False, noise: Noise = None,
                truncation: float = 1, truncation_latent: torch.Tensor | None = None, inject_index: int | None = None,
                return_latents: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The release's ``forward``; its ``noise`` / ``randomize_noise`` pair is the one argument ``noise`` here
        (``randomize_noise=False`` is ``noise="stored"``)."""
        latent = self.latent_codes(styles, input_is_latent, truncation, truncation_latent, inject_index)
        image = self.synthesize(latent, noise)
        return image, (latent if return_latents else None)
