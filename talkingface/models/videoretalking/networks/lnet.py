"""VideoReTalking's L-Net (``models/LNet.py`` of OpenTalker/video-retalking): the 96×96 lip-sync generator.

``LNet()(audio (B, 1, 80, 16), face (B, 6, 96, 96)) -> (B, 3, 96, 96)`` in (0, 1) (sigmoid). ``face`` is the
lower-half-masked frame (channels 0..2) and the reference (3..5), BGR in [0, 1] as the release's inference feeds
them; ``audio`` a Wav2Lip mel chunk. The 5-D sequence inputs of Wav2Lip-style training, audio ``(B, T, 1, 80, 16)``
and face ``(B, 6, T, H, W)``, run as ``T·B`` frames (time-major) and come back as ``(B, 3, T, H, W)``.

- ``encoder`` (``VisualEncoder``): two parallel branches, ``first_inp`` / ``first_ref`` (7×7) then ``inp_down{i}`` /
  ``ref_down{i}`` (3×3 + 2×2 average pool), channels ``base_nc·2^i`` capped at ``max_nc``; at levels ``i >= 2``
  (only ``ca2`` in the release) a cross-attention ``Transformer(2^(i+1)·base_nc, depth 2, 4 heads, dim_head base_nc,
  mlp 4·base_nc)`` updates the masked-face features from the reference's. It returns the masked-face features of
  every level, the last one concatenated with the reference's.
- ``decoder`` (``LNetDecoder``), levels ``i = layer-1 .. 0``: ``res{i}`` (``num_res_blocks`` FFC residual blocks
  conditioned on the audio feature, ``ffc.py``), ``up{i}`` (nearest ×2, 3×3), plus ``jump{i}`` of the encoder's skip
  at that size; ``final`` (7×7, sigmoid).
- ``audio_encoder``: Wav2Lip's, 13 conv + BatchNorm + ReLU blocks (some residual), (1, 80, 16) -> (descriptor_nc, 1, 1).

Encoder and decoder blocks use ``LayerNorm2d`` (over C, H, W, affine), LeakyReLU(0.1) and, by default, the legacy
``torch.nn.utils.spectral_norm`` (keys ``weight_orig``, ``weight_u``, ``weight_v``; in eval mode the weight is
``weight_orig / (u · W v)`` from the stored ``u``, ``v``, without a power iteration). ``LNet()`` has the release's
1,721 state-dict entries in its order and 127,733,507 parameters.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from talkingface.models.videoretalking.networks.attention import PassThrough, Transformer
from talkingface.models.videoretalking.networks.blocks import (DownBlock2d, FinalBlock2d, FirstBlock2d, Jump,
                                                               LayerNorm2d, UpBlock2d)
from talkingface.models.videoretalking.networks.ffc import FFCADAINResBlocks


class AudioConv(nn.Module):
    """Wav2Lip's ``Conv2d`` block: conv + BatchNorm (``conv_block.0`` / ``.1``), plus the input where ``residual``,
    then ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size, stride, padding, residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


def wav2lip_audio_encoder(descriptor_nc: int = 512) -> nn.Sequential:
    """(B, 1, 80, 16) mel chunks -> (B, descriptor_nc, 1, 1)."""
    return nn.Sequential(
        AudioConv(1, 32, 3, 1, 1),
        AudioConv(32, 32, 3, 1, 1, residual=True),
        AudioConv(32, 32, 3, 1, 1, residual=True),
        AudioConv(32, 64, 3, (3, 1), 1),
        AudioConv(64, 64, 3, 1, 1, residual=True),
        AudioConv(64, 64, 3, 1, 1, residual=True),
        AudioConv(64, 128, 3, 3, 1),
        AudioConv(128, 128, 3, 1, 1, residual=True),
        AudioConv(128, 128, 3, 1, 1, residual=True),
        AudioConv(128, 256, 3, (3, 2), 1),
        AudioConv(256, 256, 3, 1, 1, residual=True),
        AudioConv(256, 512, 3, 1, 0),
        AudioConv(512, descriptor_nc, 1, 1, 0),
    )


class VisualEncoder(nn.Module):
    """Masked face and reference ``(B, image_nc, H, W)`` -> ``[level 0, ..., level layers]`` features of the masked
    face (the last concatenated with the reference's), ``H / 2^i`` at level ``i``."""

    def __init__(self, image_nc: int, ngf: int, img_f: int, layers: int, norm_layer=nn.BatchNorm2d,
                 nonlinearity: nn.Module | None = None, use_spect: bool = False):
        super().__init__()
        nonlinearity = nn.LeakyReLU() if nonlinearity is None else nonlinearity
        self.layers = layers
        self.first_inp = FirstBlock2d(image_nc, ngf, norm_layer, nonlinearity, use_spect)
        self.first_ref = FirstBlock2d(image_nc, ngf, norm_layer, nonlinearity, use_spect)
        out_channels = ngf
        for i in range(layers):
            in_channels, out_channels = min(ngf * 2 ** i, img_f), min(ngf * 2 ** (i + 1), img_f)
            attention = PassThrough() if i < 2 else Transformer(2 ** (i + 1) * ngf, 2, 4, ngf, ngf * 4)
            setattr(self, f"ca{i}", attention)  # registration order = the release's key order
            setattr(self, f"ref_down{i}", DownBlock2d(in_channels, out_channels, norm_layer, nonlinearity, use_spect))
            setattr(self, f"inp_down{i}", DownBlock2d(in_channels, out_channels, norm_layer, nonlinearity, use_spect))
        self.output_nc = out_channels * 2

    def forward(self, masked: torch.Tensor, ref: torch.Tensor) -> list[torch.Tensor]:
        x, y = self.first_inp(masked), self.first_ref(ref)
        out = [x]
        for i in range(self.layers):
            x, y = getattr(self, f"inp_down{i}")(x), getattr(self, f"ref_down{i}")(y)
            x = getattr(self, f"ca{i}")(x, y)
            out.append(x if i < self.layers - 1 else torch.cat((x, y), dim=1))
        return out


class LNetDecoder(nn.Module):
    """Encoder features and the audio feature ``z`` -> ``(B, image_nc, H, W)`` through ``res{i}``, ``up{i}``,
    ``jump{i}`` (i = layers-1 .. 0) and ``final`` (sigmoid)."""

    def __init__(self, image_nc: int, feature_nc: int, ngf: int, img_f: int, layers: int, num_block: int,
                 norm_layer=nn.BatchNorm2d, nonlinearity: nn.Module | None = None, use_spect: bool = False):
        super().__init__()
        nonlinearity = nn.LeakyReLU() if nonlinearity is None else nonlinearity
        self.layers = layers
        out_channels = ngf
        for i in reversed(range(layers)):
            # the deepest level takes the encoder's concatenation: 2 · ngf · 2^layers channels (uncapped)
            in_channels = ngf * 2 ** (i + 1) * 2 if i == layers - 1 else min(ngf * 2 ** (i + 1), img_f)
            out_channels = min(ngf * 2 ** i, img_f)
            setattr(self, f"up{i}", UpBlock2d(in_channels, out_channels, norm_layer, nonlinearity, use_spect))
            setattr(self, f"res{i}", FFCADAINResBlocks(num_block, in_channels, feature_nc))
            setattr(self, f"jump{i}", Jump(out_channels, norm_layer, nonlinearity, use_spect))
        self.final = FinalBlock2d(out_channels, image_nc, use_spect, "sigmoid")
        self.output_nc = out_channels

    def forward(self, features: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        out = features[-1]
        for i in reversed(range(self.layers)):
            out = getattr(self, f"up{i}")(getattr(self, f"res{i}")(out, z))
            out = getattr(self, f"jump{i}")(features[i]) + out
        return self.final(out)


class LNet(nn.Module):
    """The L-Net with the release's constructor defaults (``LNet()`` is the released network)."""

    def __init__(self, image_nc: int = 3, descriptor_nc: int = 512, layer: int = 3, base_nc: int = 64,
                 max_nc: int = 512, num_res_blocks: int = 9, use_spect: bool = True):
        super().__init__()
        nonlinearity = nn.LeakyReLU(0.1)
        norm_layer = functools.partial(LayerNorm2d, affine=True)
        options = {"norm_layer": norm_layer, "nonlinearity": nonlinearity, "use_spect": use_spect}
        self.descriptor_nc = descriptor_nc
        self.encoder = VisualEncoder(image_nc, base_nc, max_nc, layer, **options)
        self.decoder = LNetDecoder(image_nc, descriptor_nc, base_nc, max_nc, layer, num_res_blocks, **options)
        self.audio_encoder = wav2lip_audio_encoder(descriptor_nc)

    def forward(self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor) -> torch.Tensor:
        batch = audio_sequences.size(0)
        sequence = face_sequences.dim() > 4
        if sequence:  # (B, T, 1, 80, 16) and (B, 6, T, H, W) -> T·B frames, time-major
            audio_sequences = torch.cat(audio_sequences.unbind(1), dim=0)
            face_sequences = torch.cat(face_sequences.unbind(2), dim=0)
        masked, ref = torch.split(face_sequences, 3, dim=1)
        out = self.decoder(self.encoder(masked, ref), self.audio_encoder(audio_sequences))
        if sequence:
            out = torch.stack(torch.split(out, batch, dim=0), dim=2)
        return out
