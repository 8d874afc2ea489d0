"""VideoReTalking's E-Net (``models/ENet.py::ENet``): a StyleGAN2 decoder that lifts the frozen L-Net's 96×96 mouth
to 384×384, styled by a code encoded from the reference face. Same state-dict layout and numerics as the release.

The building blocks are GFPGAN's "clean" StyleGAN2 blocks (the release's ``models/base_blocks.py``), shared with
GFPGANv1.3: ``StyleConv`` / ``ToRGB`` from ``talkingface.restoration.stylegan2_clean`` (modulated convolutions with
demodulation (eps 1e-8), the ×√2 gain and LeakyReLU(0.2) of ``StyleConv``, bilinear ×2 upsampling
(``align_corners=False``) *before* the convolution, one Gaussian noise image per ``StyleConv`` call) and the style
encoder's ``ResBlock(mode='down')`` from ``talkingface.restoration.gfpgan``.

Release behaviour kept on purpose:

- the style code comes from the *reference half* of ``face`` (channels 3:6) resized to 256, while the L-Net sees
  the masked half and ``gt`` (the third argument) resized to 96; the official inference passes the reference
  as ``gt`` too, so there the two coincide;
- the L-Net is frozen only through ``requires_grad`` (the release's ``low_res_img.detach()`` discards its
  result); ``ENet.train()`` switches it to training mode as the release does;
- noise: every ``StyleConv`` call draws ``new_empty(B, 1, H, W).normal_()`` (the same numbers as
  ``torch.randn((B, 1, H, W), dtype=, device=)``) in layer order, so under the same seed the output equals the
  release's. ``noise="zero"`` adds none (deterministic dubbing; no draw from the generator). Explicit noise images
  are cast to the output's dtype (``StyleConv(cast_noise=True)``).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from talkingface.restoration.gfpgan.network import ResBlock
from talkingface.restoration.stylegan2_clean import NoiseMode, StyleConv, ToRGB

NOISE_MODES = ("random", "zero")
STYLE_SIZE = 256  # the reference is resized to this for the style encoder (6 halvings to 4×4)
LNET_SIZE = 96  # the L-Net's input size
SCALE = 4  # the output is this many times the L-Net's size (two x2 stages): 384
PAD = 2  # reflect padding of the L-Net image before the decoder
CROP = 8  # pixels cut from each border of the decoder's output (PAD × 4 after two ×2 stages)


class ENet(nn.Module):
    """The release's ``ENet(num_style_feat=512, lnet=None, concat=False)`` around a frozen L-Net ``lnet`` (any
    module ``lnet(audio (N, 1, 80, 16), face (N, 6, 96, 96)) -> (N, 3, s, s)``, kept as ``low_res``).

    ``noise``: ``"random"`` (the release: one Gaussian image per ``StyleConv`` call) or ``"zero"``. ``width`` scales
    every channel count (1: the release; smaller E-Nets for tests and small runs).
    ``concat=True`` builds the release's layout (35 decoder input channels), but its forward raises: the release's
    cannot run either (its one-tensor L-Net cannot be unpacked into ``(image, features)``, and with 32 feature
    channels the 35-channel skip cannot be added to the 3-channel ToRGB output).
    """

    noise = NoiseMode(NOISE_MODES)

    def __init__(self, num_style_feat: int = 512, lnet: nn.Module | None = None, concat: bool = False,
                 noise: str = "random", width: float = 1.0):
        super().__init__()
        self.low_res = lnet
        if lnet is not None:
            lnet.requires_grad_(False)
        self.num_style_feat, self.concat = num_style_feat, concat
        self.noise = noise
        def scaled(channels: int) -> int:
            return max(int(round(channels * width)), 4)

        widths = tuple(scaled(c) for c in (256, 256, 512, 512, 512, 512, 512))  # 256² -> 4², one halving per block
        self.conv_body_first = nn.Conv2d(3, widths[0], 1)
        self.conv_body_down = nn.ModuleList(ResBlock(a, b, mode="down") for a, b in zip(widths, widths[1:]))
        self.final_linear = nn.Linear(widths[-1] * 4 * 4, num_style_feat)
        self.final_conv = nn.Conv2d(widths[-1], widths[-1], 3, 1, 1)
        self.style_convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()  # empty, as in the release
        in_channels = 3 + 32 if concat else 3
        for out_channels in (scaled(256), scaled(128)):
            self.style_convs.append(StyleConv(in_channels, out_channels, 3, num_style_feat, sample_mode="upsample",
                                              cast_noise=True))
            self.style_convs.append(StyleConv(out_channels, out_channels, 3, num_style_feat, cast_noise=True))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat))
            in_channels = out_channels

    def style_code(self, ref: torch.Tensor) -> torch.Tensor:
        """``ref (N, 3, H, W)`` -> the style code ``(N, 1, num_style_feat)``."""
        feat = F.interpolate(ref, size=(STYLE_SIZE, STYLE_SIZE), mode="bilinear", align_corners=False)
        feat = F.leaky_relu(self.conv_body_first(feat), negative_slope=0.2)
        for block in self.conv_body_down:
            feat = block(feat)
        feat = F.leaky_relu(self.final_conv(feat), negative_slope=0.2)
        return self.final_linear(feat.reshape(feat.shape[0], -1)).reshape(feat.shape[0], -1, self.num_style_feat)

    def decode(self, low_res: torch.Tensor, style: torch.Tensor,
               noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """``low_res (N, 3, s, s)`` -> ``(N, 3, 4s, 4s)``: reflect-padded by 2, two ×2 StyleGAN2 stages, 8 px cut
        from each border. ``noise``: one ``(N, 1, h, w)`` image per ``StyleConv`` (else ``self.noise``)."""
        layer_noise = list(noise) if noise is not None else [self.noise] * len(self.style_convs)
        out = skip = F.pad(low_res, (PAD, PAD, PAD, PAD), mode="reflect")
        for stage, to_rgb in enumerate(self.to_rgbs):
            out = self.style_convs[2 * stage](out, style, layer_noise[2 * stage])
            out = self.style_convs[2 * stage + 1](out, style, layer_noise[2 * stage + 1])
            skip = to_rgb(out, style, skip)
        return skip[:, :, CROP:-CROP, CROP:-CROP]

    def forward(self, audio: torch.Tensor, face: torch.Tensor, gt: torch.Tensor,
                noise: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``audio (B, 1, 80, 16)``, ``face (B, 6, H, W)`` (masked | reference), ``gt (B, 3, H, W)``, BGR in
        [0, 1] -> ``(out (B, 3, 384, 384), low_res (B, 3, 96, 96))`` for the release's 96-px L-Net.

        Sequences: ``audio (B, T, 1, 80, 16)``, ``face (B, 6, T, H, W)``, ``gt (B, 3, T, H, W)`` are run as
        ``T·B`` frames (frame-major) -> ``(B, 3, T, 384, 384)`` and ``low_res`` nearest-resized to 384,
        ``(B, 3, T, 384, 384)``, as the release does. ``noise``: explicit noise images (see ``decode``).
        """
        if self.low_res is None:
            raise RuntimeError("ENet has no L-Net: build it with ENet(lnet=...)")
        if self.concat:
            raise NotImplementedError("ENet(concat=True): the release's forward cannot run (it unpacks the L-Net's "
                                      "one output into image and features, then adds a 35-channel skip to the "
                                      "3-channel ToRGB output); only its layout is supported")
        batch, sequence = audio.shape[0], face.dim() > 4
        inp, ref = torch.split(face, 3, dim=1)
        if sequence:
            audio, inp, ref, gt = (torch.cat(x.unbind(dim), dim=0)
                                   for x, dim in ((audio, 1), (inp, 2), (ref, 2), (gt, 2)))
        style = self.style_code(ref)
        lnet_input = F.interpolate(torch.cat([inp, gt], dim=1), size=(LNET_SIZE, LNET_SIZE), mode="bilinear",
                                   align_corners=False)
        low_res = self.low_res(audio, lnet_input)
        out = self.decode(low_res, style, noise)
        if sequence:
            out = torch.stack(torch.split(out, batch, dim=0), dim=2)
            low_res = F.interpolate(low_res, size=out.shape[3:], mode="nearest")
            low_res = torch.stack(torch.split(low_res, batch, dim=0), dim=2)
        return out, low_res
