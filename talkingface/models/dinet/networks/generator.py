"""DINet's generator (``net_g``): source/reference encoders, alignment + audio codes, AdaAT, decoder."""
from __future__ import annotations

import torch
from torch import nn

from .adaat import AdaAT
from ....device import fp32_call
from ...common.blocks import DownBlock1d, DownBlock2d, ResBlock1d, ResBlock2d, SameBlock1d, SameBlock2d, UpBlock2d


def _image_encoder(in_channels: int) -> nn.Sequential:
    """7×7 conv to 64 channels, then two stride-2 blocks to 256 channels at 1/4 resolution."""
    return nn.Sequential(SameBlock2d(in_channels, 64, kernel_size=7, padding=3),
                         DownBlock2d(64, 128, kernel_size=3, padding=1),
                         DownBlock2d(128, 256, kernel_size=3, padding=1))


def _alignment_encoder() -> nn.Sequential:
    """``trans_conv``: 512 -> 128 channels and four stride-2 steps (26×20 -> 2×2 at mouth 64)."""
    return nn.Sequential(
        SameBlock2d(512, 128, kernel_size=3, padding=1),
        SameBlock2d(128, 128, kernel_size=11, padding=5),
        SameBlock2d(128, 128, kernel_size=11, padding=5),
        DownBlock2d(128, 128, kernel_size=3, padding=1),
        SameBlock2d(128, 128, kernel_size=7, padding=3),
        SameBlock2d(128, 128, kernel_size=7, padding=3),
        DownBlock2d(128, 128, kernel_size=3, padding=1),
        SameBlock2d(128, 128, kernel_size=3, padding=1),
        DownBlock2d(128, 128, kernel_size=3, padding=1),
        SameBlock2d(128, 128, kernel_size=3, padding=1),
        DownBlock2d(128, 128, kernel_size=3, padding=1),
    )


def _audio_encoder(audio_channel: int) -> nn.Sequential:
    """Five frames of ``audio_channel`` features -> 128 × 2 (time 5 -> 3 -> 2)."""
    return nn.Sequential(SameBlock1d(audio_channel, 128, kernel_size=5, padding=2),
                         ResBlock1d(128, 128, 3, 1),
                         DownBlock1d(128, 128, 3, 1),
                         ResBlock1d(128, 128, 3, 1),
                         DownBlock1d(128, 128, 3, 1),
                         SameBlock1d(128, 128, kernel_size=3, padding=1))


class DINetGenerator(nn.Module):
    """DINet(source_channel, ref_channel, audio_channel), the official ``net_g`` layout.

    ``forward(source_img (B,3,H,W), ref_img (B,15,H,W), audio_feature (B,audio_channel,T))`` returns
    (B,3,H,W) in [0,1]. H and W must be multiples of 4 (the face crops 104×80, 208×160, 416×320
    of mouths 64/128/256 are); the alignment and audio codes are globally pooled, so one set of
    weights serves every resolution. T is 5 in DINet (any T >= 1 runs).
    """

    def __init__(self, source_channel: int = 3, ref_channel: int = 15, audio_channel: int = 29,
                 adaat_align_corners: bool = False):
        super().__init__()
        self.source_channel = source_channel
        self.ref_channel = ref_channel
        self.audio_channel = audio_channel
        self.source_in_conv = _image_encoder(source_channel)
        self.ref_in_conv = _image_encoder(ref_channel)
        self.trans_conv = _alignment_encoder()
        self.audio_encoder = _audio_encoder(audio_channel)
        self.appearance_conv_list = nn.ModuleList(
            nn.Sequential(*(ResBlock2d(256, 256, 3, 1) for _ in range(4))) for _ in range(2))
        self.adaAT = AdaAT(256, 256, align_corners=adaat_align_corners)
        self.out_conv = nn.Sequential(
            SameBlock2d(512, 128, kernel_size=3, padding=1),
            UpBlock2d(128, 128, kernel_size=3, padding=1),
            ResBlock2d(128, 128, 3, 1),
            UpBlock2d(128, 128, kernel_size=3, padding=1),
            nn.Conv2d(128, 3, kernel_size=7, padding=3),
            nn.Sigmoid(),
        )
        self.global_avg2d = nn.AdaptiveAvgPool2d(1)
        self.global_avg1d = nn.AdaptiveAvgPool1d(1)

    def transformation_code(self, source_feature: torch.Tensor, ref_feature: torch.Tensor,
                            audio_feature: torch.Tensor) -> torch.Tensor:
        """The (B, 256) AdaAT code: pooled alignment code (128) then pooled audio code (128)."""
        img_para = self.global_avg2d(self.trans_conv(torch.cat([source_feature, ref_feature], 1))).flatten(1)
        audio_para = self.global_avg1d(self.audio_encoder(audio_feature)).flatten(1)
        return torch.cat([img_para, audio_para], 1)

    def forward(self, source_img: torch.Tensor, ref_img: torch.Tensor, audio_feature: torch.Tensor) -> torch.Tensor:
        """Inpaint the masked mouth of ``source_img`` from the references, driven by the audio window."""
        source_feature = self.source_in_conv(source_img)
        ref_feature = self.ref_in_conv(ref_img)
        code = self.transformation_code(source_feature, ref_feature, audio_feature)
        warped = self.appearance_conv_list[0](ref_feature)
        warped = self.adaAT(warped, code)
        warped = self.appearance_conv_list[1](warped)
        features = self.out_conv[:-2](torch.cat([source_feature, warped], 1))
        return fp32_call(self.out_conv[-2:], features)  # the picture in full precision under bf16 autocast
