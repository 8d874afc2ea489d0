"""GFPGANv1Clean (GFPGAN's ``gfpganv1_clean_arch.py``): a U-Net whose bottleneck gives the style codes and whose
decoder levels give SFT scale/shift maps for a StyleGAN2-clean decoder. Same state-dict layout and numerics.

- U-Net encoder: ``conv_body_first`` (1×1) + LeakyReLU(0.2), ``log2(out) - 2`` residual blocks that halve
  (``ResBlock(mode='down')``: conv, LeakyReLU, bilinear ×½, conv, LeakyReLU, plus a 1×1 skip of the bilinear-½
  input), ``final_conv`` + LeakyReLU at 4×4;
- the style code: ``final_linear`` of the flattened 4×4 features; with ``different_w`` one code per latent,
  ``(B, num_latent, num_style_feat)``;
- U-Net decoder: per level the matching encoder output is added, ``ResBlock(mode='up')`` (bilinear ×2), and
  ``condition_scale`` / ``condition_shift`` (conv, LeakyReLU, conv) give the SFT maps (``toRGB`` gives the
  intermediate RGB images when ``return_rgb``);
- the decoder (``StyleGAN2GeneratorCSFT``): after each stage's upsampling ``StyleConv``, ``out · scale + shift``
  on the second half of the channels (``sft_half``) or on all of them. U-Net channels are half the decoder's
  (``narrow · 0.5``), so with ``sft_half`` the maps cover exactly that half.

The release's ``decoder_load_path`` (a StyleGAN2 file loaded into the decoder before training) is not offered;
``return_latents`` had no effect on ``GFPGANv1Clean``'s output and is not offered either.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..stylegan2_clean import NOISE_MODES, Noise, StyleGAN2GeneratorClean, channel_table

# GFPGANer(arch='clean', channel_multiplier=2): the configuration GFPGANv1.3.pth was trained in
GFPGAN_V13_CONFIG = dict(out_size=512, num_style_feat=512, channel_multiplier=2, fix_decoder=False, num_mlp=8,
                         input_is_latent=True, different_w=True, narrow=1, sft_half=True)


def sft(out: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, half: bool) -> torch.Tensor:
    """Spatial feature transform ``out · scale + shift``; with ``half`` only on the second half of the channels
    (the first half passes unchanged)."""
    if half:
        same, modulated = torch.split(out, int(out.size(1) // 2), dim=1)
        return torch.cat([same, modulated * scale + shift], dim=1)
    return out * scale + shift


class StyleGAN2GeneratorCSFT(StyleGAN2GeneratorClean):
    """``StyleGAN2GeneratorClean`` with SFT: ``forward(styles, conditions, ...)``, ``conditions`` the list
    ``[scale_0, shift_0, scale_1, shift_1, ...]`` (one pair per stage from 8×8 up; fewer levels are allowed)."""

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8, channel_multiplier: int = 2,
                 narrow: float = 1, sft_half: bool = False, noise: str = "random"):
        super().__init__(out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                         channel_multiplier=channel_multiplier, narrow=narrow, noise=noise)
        self.sft_half = sft_half

    def forward(self, styles: Sequence[torch.Tensor], conditions: Sequence[torch.Tensor],
                input_is_latent: bool = False, noise: Noise = None, truncation: float = 1,
                truncation_latent: torch.Tensor | None = None, inject_index: int | None = None,
                return_latents: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        latent = self.latent_codes(styles, input_is_latent, truncation, truncation_latent, inject_index)

        def modulate(stage: int, out: torch.Tensor) -> torch.Tensor:
            if 2 * stage + 1 < len(conditions):  # the conditions may have fewer levels
                return sft(out, conditions[2 * stage], conditions[2 * stage + 1], self.sft_half)
            return out

        image = self.synthesize(latent, noise, modulate)
        return image, (latent if return_latents else None)


class ResBlock(nn.Module):
    """``conv1 -> LeakyReLU -> bilinear (×½ 'down' / ×2 'up') -> conv2 -> LeakyReLU`` plus ``skip`` (1×1, no bias)
    of the resampled input."""

    def __init__(self, in_channels: int, out_channels: int, mode: str = "down"):
        super().__init__()
        if mode not in ("down", "up"):
            raise ValueError(f"mode={mode!r}: expected 'down' or 'up'")
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale_factor = 0.5 if mode == "down" else 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), negative_slope=0.2)
        out = F.interpolate(out, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        out = F.leaky_relu(self.conv2(out), negative_slope=0.2)
        x = F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        return out + self.skip(x)


def _condition(channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.2),
                         nn.Conv2d(channels, out_channels, 3, 1, 1))


class GFPGANv1Clean(nn.Module):
    """The release's ``GFPGANv1Clean`` (defaults as there; ``GFPGAN_V13_CONFIG`` / ``gfpgan_v13()`` for
    GFPGANv1.3.pth): ``forward(x (B, 3, out, out) RGB in [-1, 1]) -> (image (B, 3, out, out), rgbs)``, ``rgbs``
    the U-Net decoder's RGB images (8×8 ... out) when ``return_rgb`` (else empty).

    ``noise``: the decoder's noise (``"random"``, the release's; ``"zero"``; ``"stored"``; or one tensor per
    ``StyleConv``); None uses the attribute ``noise`` (settable).
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, channel_multiplier: int = 1, fix_decoder: bool = True,
                 num_mlp: int = 8, input_is_latent: bool = False, different_w: bool = False, narrow: float = 1,
                 sft_half: bool = False, noise: str = "random"):
        super().__init__()
        self.out_size, self.input_is_latent, self.different_w = out_size, input_is_latent, different_w
        self.num_style_feat = num_style_feat
        channels = channel_table(narrow * 0.5, channel_multiplier)  # the U-Net: half the decoder's widths
        self.log_size = int(math.log(out_size, 2))
        first = channels[f"{2 ** self.log_size}"]
        self.conv_body_first = nn.Conv2d(3, first, 1)
        self.conv_body_down = nn.ModuleList()
        in_channels = first
        for level in range(self.log_size, 2, -1):
            out_channels = channels[f"{2 ** (level - 1)}"]
            self.conv_body_down.append(ResBlock(in_channels, out_channels, mode="down"))
            in_channels = out_channels
        self.final_conv = nn.Conv2d(in_channels, channels["4"], 3, 1, 1)
        self.conv_body_up = nn.ModuleList()
        in_channels = channels["4"]
        for level in range(3, self.log_size + 1):
            out_channels = channels[f"{2 ** level}"]
            self.conv_body_up.append(ResBlock(in_channels, out_channels, mode="up"))
            in_channels = out_channels
        self.toRGB = nn.ModuleList(nn.Conv2d(channels[f"{2 ** level}"], 3, 1) for level in range(3, self.log_size + 1))
        codes = (self.log_size * 2 - 2) if different_w else 1
        self.final_linear = nn.Linear(channels["4"] * 4 * 4, codes * num_style_feat)
        self.stylegan_decoder = StyleGAN2GeneratorCSFT(out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                                                       channel_multiplier=channel_multiplier, narrow=narrow,
                                                       sft_half=sft_half, noise=noise)
        if fix_decoder:
            self.stylegan_decoder.requires_grad_(False)
        self.condition_scale, self.condition_shift = nn.ModuleList(), nn.ModuleList()
        for level in range(3, self.log_size + 1):
            out_channels = channels[f"{2 ** level}"]
            sft_channels = out_channels if sft_half else out_channels * 2
            self.condition_scale.append(_condition(out_channels, sft_channels))
            self.condition_shift.append(_condition(out_channels, sft_channels))

    @property
    def noise(self) -> str:
        return self.stylegan_decoder.noise

    @noise.setter
    def noise(self, mode: str) -> None:
        self.stylegan_decoder.noise = mode

    def encode(self, x: torch.Tensor, return_rgb: bool = True) -> tuple[torch.Tensor, list[torch.Tensor],
                                                                        list[torch.Tensor]]:
        """The U-Net: ``(style code, conditions [scale_0, shift_0, ...], rgbs)``."""
        conditions, skips, rgbs = [], [], []
        feat = F.leaky_relu(self.conv_body_first(x), negative_slope=0.2)
        for block in self.conv_body_down:
            feat = block(feat)
            skips.insert(0, feat)
        feat = F.leaky_relu(self.final_conv(feat), negative_slope=0.2)
        style_code = self.final_linear(feat.view(feat.size(0), -1))
        if self.different_w:
            style_code = style_code.view(style_code.size(0), -1, self.num_style_feat)
        for i, block in enumerate(self.conv_body_up):
            feat = block(feat + skips[i])
            conditions.append(self.condition_scale[i](feat))
            conditions.append(self.condition_shift[i](feat))
            if return_rgb:
                rgbs.append(self.toRGB[i](feat))
        return style_code, conditions, rgbs

    def forward(self, x: torch.Tensor, return_rgb: bool = True,
                noise: Noise = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (self.out_size, self.out_size):
            raise ValueError(f"GFPGANv1Clean({self.out_size}) expects (B, 3, {self.out_size}, {self.out_size}) "
                             f"images, got {tuple(x.shape)}")
        style_code, conditions, rgbs = self.encode(x, return_rgb)
        image, _ = self.stylegan_decoder([style_code], conditions, input_is_latent=self.input_is_latent, noise=noise)
        return image, rgbs


def gfpgan_v13(noise: str = "random") -> GFPGANv1Clean:
    """``GFPGANv1Clean`` in the configuration of GFPGANv1.3.pth (86,444,252 parameters, 285 state-dict entries)."""
    if noise not in NOISE_MODES:
        raise ValueError(f"noise={noise!r}: expected one of {', '.join(NOISE_MODES)}")
    return GFPGANv1Clean(**GFPGAN_V13_CONFIG, noise=noise)
