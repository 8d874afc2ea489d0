"""ATVGnet's AT-net audio encoder as AudioDVP runs it (``vendor/ATVGnet/code/test.py``): one 28×12 MFCC window
per video frame -> a 256-d feature (docs: 3dmm_methods.md §1.3, §9).

Only the encoder of ATVGnet's ``AT_net`` runs; its landmark encoder, LSTM and LSTM head are in the release file but
never used. The submodule names keep the release's spelling (``audio_eocder``), so the state-dict keys are the
release's without DataParallel's ``module.``.
"""
from __future__ import annotations

import torch
from torch import nn

MFCC_ROWS = 28  # MFCC frames per window (0.28 s at a 10 ms hop)
MFCC_COEFFS = 12  # c1..c12 (c0, the log energy, dropped)
FEATURE_DIM = 256


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 convolution (no bias), BatchNorm, ReLU: ``N.0`` / ``N.1`` in the release's keys."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels),
                         nn.ReLU(inplace=True))


class ATNetEncoder(nn.Module):
    """AT-net's audio encoder: (B, 1, 28, 12) MFCC windows -> (B, 256) features (after a ReLU, so >= 0).

    Five conv blocks (1→64→128, max-pool 3 stride (1, 2), 128→256→256→512, max-pool 3 stride 2, both unpadded)
    give (512, 12, 2), flattened channel-major to 12288, then Linear 12288→2048, ReLU, Linear 2048→256, ReLU.
    """

    def __init__(self) -> None:
        super().__init__()
        self.audio_eocder = nn.Sequential(
            _conv_bn_relu(1, 64), _conv_bn_relu(64, 128), nn.MaxPool2d(3, stride=(1, 2)),
            _conv_bn_relu(128, 256), _conv_bn_relu(256, 256), _conv_bn_relu(256, 512), nn.MaxPool2d(3, stride=(2, 2)))
        self.audio_eocder_fc = nn.Sequential(nn.Linear(512 * 12 * 2, 2048), nn.ReLU(inplace=True),
                                             nn.Linear(2048, FEATURE_DIM), nn.ReLU(inplace=True))

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        if mfcc.dim() != 4 or tuple(mfcc.shape[1:]) != (1, MFCC_ROWS, MFCC_COEFFS):
            raise ValueError(f"ATNetEncoder expects (B, 1, {MFCC_ROWS}, {MFCC_COEFFS}) MFCC windows, got "
                             f"{tuple(mfcc.shape)}")
        features = self.audio_eocder(mfcc)  # (B, 512, 12, 2)
        return self.audio_eocder_fc(features.flatten(1))


def encode_sequence(encoder: ATNetEncoder, mfcc: torch.Tensor) -> list[torch.Tensor]:
    """``AT_net.forward``: (B, T, 28, 12) windows -> a list of T (B, 256) features, one step at a time."""
    if mfcc.dim() != 4:
        raise ValueError(f"encode_sequence expects (B, T, {MFCC_ROWS}, {MFCC_COEFFS}), got {tuple(mfcc.shape)}")
    return [encoder(mfcc[:, step].unsqueeze(1)) for step in range(mfcc.shape[1])]
