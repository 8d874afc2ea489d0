"""The two Wav2Lip training networks VideoReTalking's L-Net recipe needs (Rudrabha/Wav2Lip ``models/syncnet.py`` and
``models/wav2lip.py`` at db7bc44, layouts and numerics of ``SyncNet_color`` and ``Wav2Lip_disc_qual``):

- ``SyncNetExpert``: the lip-sync expert. ``(mel (B, 1, 80, 16), lower faces (B, 15, S/2, S)) -> (audio, face)``
  unit embeddings; ``sync_probability`` is their cosine (both are ReLU outputs, so it lies in [0, 1]) and the expert
  is trained with binary cross-entropy on it (Wav2Lip's ``color_syncnet_train.py``). At S = 96 (the release) the
  encoders end at 1×1; other sizes average the last feature map (``width`` scales the channels).
- ``QualityDiscriminator``: the visual-quality discriminator on the lower half of each frame, a sigmoid per frame.

Both keep Wav2Lip's module names (``face_encoder``, ``audio_encoder``, ``face_encoder_blocks``, ``binary_pred``),
so at ``width=1`` Wav2Lip's ``lipsync_expert.pth`` / ``visual_quality_disc.pth`` state dicts load into them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .lnet import AudioConv


def _scaled(channels: int, width: float) -> int:
    return max(int(round(channels * width)), 4)


class _LeakyConv(nn.Module):
    """Wav2Lip's ``nonorm_Conv2d``: conv (``conv_block.0``) + LeakyReLU(0.01)."""

    def __init__(self, cin: int, cout: int, kernel_size, stride, padding):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding))
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def _blocks(spec, width: float, block) -> list[nn.Module]:
    """``spec``: ``(cin, cout, kernel, stride, padding, residual)`` rows at width 1; channels scaled by ``width``
    (the first input channel count is kept)."""
    layers = []
    for index, (cin, cout, kernel, stride, padding, residual) in enumerate(spec):
        cin = cin if index == 0 else _scaled(cin, width)
        layers.append(block(cin, _scaled(cout, width), kernel, stride, padding, residual=residual))
    return layers


_FACE = ((15, 32, 7, 1, 3, False), (32, 64, 5, (1, 2), 1, False), (64, 64, 3, 1, 1, True), (64, 64, 3, 1, 1, True),
         (64, 128, 3, 2, 1, False), (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True),
         (128, 256, 3, 2, 1, False), (256, 256, 3, 1, 1, True), (256, 256, 3, 1, 1, True),
         (256, 512, 3, 2, 1, False), (512, 512, 3, 1, 1, True), (512, 512, 3, 1, 1, True),
         (512, 512, 3, 2, 1, False), (512, 512, 3, 1, 0, False), (512, 512, 1, 1, 0, False))
_AUDIO = ((1, 32, 3, 1, 1, False), (32, 32, 3, 1, 1, True), (32, 32, 3, 1, 1, True),
          (32, 64, 3, (3, 1), 1, False), (64, 64, 3, 1, 1, True), (64, 64, 3, 1, 1, True),
          (64, 128, 3, 3, 1, False), (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True),
          (128, 256, 3, (3, 2), 1, False), (256, 256, 3, 1, 1, True), (256, 256, 3, 1, 1, True),
          (256, 512, 3, 1, 0, False), (512, 512, 1, 1, 0, False))


class SyncNetExpert(nn.Module):
    """Wav2Lip's ``SyncNet_color`` (``width=1``: its layout); faces are the lower halves of 5 frames, BGR in [0, 1]."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        self.face_encoder = nn.Sequential(*_blocks(_FACE, width, AudioConv))
        self.audio_encoder = nn.Sequential(*_blocks(_AUDIO, width, AudioConv))

    def forward(self, audio: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        face = self.face_encoder(faces).mean(dim=(2, 3))
        sound = self.audio_encoder(audio).mean(dim=(2, 3))
        return F.normalize(sound, p=2, dim=1), F.normalize(face, p=2, dim=1)

    def sync_probability(self, audio: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """``(B,)`` cosine of the two embeddings: Wav2Lip's probability that ``audio`` and ``faces`` are in sync."""
        sound, face = self(audio, faces)
        return F.cosine_similarity(sound, face)


def sync_bce(probability: torch.Tensor, in_sync: bool | torch.Tensor) -> torch.Tensor:
    """Wav2Lip's ``cosine_loss``: binary cross-entropy of the sync probability to 1 (in sync) or 0, per sample
    labels allowed. The probability is clamped away from 0 and 1 (``BCELoss`` clamps its log at -100 likewise)."""
    target = in_sync if isinstance(in_sync, torch.Tensor) else torch.full_like(probability, float(in_sync))
    return F.binary_cross_entropy(probability.clamp(1e-7, 1 - 1e-7), target.to(probability.dtype))


_QUALITY = (((3, 32, 7, 1, 3),),
            ((32, 64, 5, (1, 2), 2), (64, 64, 5, 1, 2)),
            ((64, 128, 5, 2, 2), (128, 128, 5, 1, 2)),
            ((128, 256, 5, 2, 2), (256, 256, 5, 1, 2)),
            ((256, 512, 3, 2, 1), (512, 512, 3, 1, 1)),
            ((512, 512, 3, 2, 1), (512, 512, 3, 1, 1)),
            ((512, 512, 3, 1, 0), (512, 512, 1, 1, 0)))


class QualityDiscriminator(nn.Module):
    """Wav2Lip's ``Wav2Lip_disc_qual`` (``width=1``: its layout): ``faces (N, 3, S, S)`` or ``(B, 3, T, S, S)`` ->
    ``(N, 1)`` probabilities that each frame's lower half is real (frames of a sequence time-major, as Wav2Lip)."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        blocks = []
        for stage in _QUALITY:
            layers = []
            for cin, cout, kernel, stride, padding in stage:
                layers.append(_LeakyConv(3 if cin == 3 else _scaled(cin, width), _scaled(cout, width), kernel,
                                         stride, padding))
            blocks.append(nn.Sequential(*layers))
        self.face_encoder_blocks = nn.ModuleList(blocks)
        self.binary_pred = nn.Sequential(nn.Conv2d(_scaled(512, width), 1, 1), nn.Sigmoid())

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        if faces.dim() > 4:
            faces = torch.cat(faces.unbind(2), dim=0)
        x = faces[:, :, faces.shape[2] // 2:]
        for block in self.face_encoder_blocks:
            x = block(x)
        return self.binary_pred(x).mean(dim=(2, 3))
