"""LawDNet's generator (``models/LawDNet.py::LawDNet``) with the release's layout and numerics.

DINet's encoders without BatchNorm, the alignment code resized to 8×6 and fused with the audio code by
cross-attention, and local affine warps (``LocalAffineWarp``) of the reference features instead of AdaAT.

Release quirk: the official loop runs every warp layer on the reference features but keeps only the
last result, so with ``warp_layer_num=2`` layer 0 (4.73 M parameters) never affects the output. Its keys
stay in the state dict (strict loading of the release); ``skip_dead_layers`` (default) does not compute it,
which gives the same output and saves its time (and keeps it out of the autograd graph, so DDP needs no
``find_unused_parameters``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ....device import fp32_call
from ...common.blocks import DownBlock1d, DownBlock2d, ResBlock1d, ResBlock2d, SameBlock1d, SameBlock2d, UpBlock2d
from .attention import VIDEO_SIZE, CrossAttention
from .warp import LocalAffineWarp


def _image_encoder(channels: int) -> nn.Sequential:
    return nn.Sequential(SameBlock2d(channels, 64, kernel_size=7, padding=3, norm=False),
                         DownBlock2d(64, 128, kernel_size=3, padding=1, norm=False),
                         DownBlock2d(128, 256, kernel_size=3, padding=1, norm=False))


def _alignment_encoder() -> nn.Sequential:
    layers: list[nn.Module] = [SameBlock2d(512, 128, kernel_size=3, padding=1, norm=False)]
    for kernels in ((11, 11), (7, 7), (3,), (3,)):  # then a stride-2 block after each group
        layers += [SameBlock2d(128, 128, kernel_size=k, padding=k // 2, norm=False) for k in kernels]
        layers.append(DownBlock2d(128, 128, kernel_size=3, padding=1, norm=False))
    return nn.Sequential(*layers)


def _audio_encoder(channels: int) -> nn.Sequential:
    return nn.Sequential(SameBlock1d(channels, 128, kernel_size=5, padding=2, norm=False),
                         ResBlock1d(128, 128, 3, 1, norm=False, unused_norms=True),
                         DownBlock1d(128, 128, 3, 1, norm=False),
                         ResBlock1d(128, 128, 3, 1, norm=False, unused_norms=True),
                         DownBlock1d(128, 128, 3, 1, norm=False),
                         SameBlock1d(128, 128, kernel_size=3, padding=1, norm=False))


class LawDNetGenerator(nn.Module):
    """``generator(source (B,3,H,W), refs (B,15,H,W), audio (B,C,5))`` in [0,1] -> ``(B,3,H,W)`` in [0,1]."""

    def __init__(self, source_channel: int = 3, ref_channel: int = 15, audio_channel: int = 29,
                 warp_layer_num: int = 2, num_kpoints: int = 5, standard_grid_size: int = 60,
                 scrambled_grid: bool = True, skip_dead_layers: bool = True):
        super().__init__()
        self.warp_layer_num, self.skip_dead_layers = warp_layer_num, skip_dead_layers
        self.source_in_conv = _image_encoder(source_channel)
        self.ref_in_conv = _image_encoder(ref_channel)
        self.trans_conv = _alignment_encoder()
        self.audio_encoder = _audio_encoder(audio_channel)
        self.appearance_conv_list = nn.ModuleList(
            nn.Sequential(ResBlock2d(256, 256, 3, 1, norm=False), ResBlock2d(256, 256, 3, 1, norm=False))
            for _ in range(warp_layer_num))
        self.lawLayer_list = nn.ModuleList(
            LocalAffineWarp(256, num_kpoints, 256, standard_grid_size, scrambled_grid) for _ in range(warp_layer_num))
        self.out_conv = nn.Sequential(
            SameBlock2d(512, 128, kernel_size=3, padding=1, norm=False),
            UpBlock2d(128, 128, kernel_size=3, padding=1, norm=False),
            ResBlock2d(128, 128, 3, 1, norm=False),
            UpBlock2d(128, 128, kernel_size=3, padding=1, norm=False),
            nn.Conv2d(128, 3, kernel_size=(7, 7), padding=(3, 3)),
            nn.Sigmoid())
        self.cross_attention = CrossAttention()

    def forward(self, source_img: torch.Tensor, ref_img: torch.Tensor, audio_feature: torch.Tensor) -> torch.Tensor:
        source_feature = self.source_in_conv(source_img)
        ref_feature = self.ref_in_conv(ref_img)
        alignment = self.trans_conv(torch.cat([source_feature, ref_feature], 1))
        if tuple(alignment.shape[2:]) != VIDEO_SIZE:  # coarse-to-fine stages: the native size is M = 288's
            alignment = F.interpolate(alignment, size=VIDEO_SIZE, mode="bilinear", align_corners=True)
        code = self.cross_attention(alignment, self.audio_encoder(audio_feature))
        layers = range(self.warp_layer_num - 1, self.warp_layer_num) if self.skip_dead_layers else range(self.warp_layer_num)
        for i in layers:  # only the last layer's result is used (see the module docstring)
            warped = self.lawLayer_list[i](self.appearance_conv_list[i](ref_feature), code)
        features = self.out_conv[:-2](torch.cat([source_feature, warped], 1))
        return fp32_call(self.out_conv[-2:], features)  # the picture in full precision under bf16 autocast
