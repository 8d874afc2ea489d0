"""DeepSpeech2 (SeanNaren deepspeech.pytorch v3, ``LibriSpeech_Pretrained_v3.ckpt``) with the checkpoint's key
layout: LawDNet's newer audio front end.

Two ``Conv2d`` + ``BatchNorm2d`` + ``Hardtanh(0, 20)`` layers (the first halves time), five bidirectional
LSTM(1024) layers whose two directions are summed (BatchNorm over features before every layer but the
first), then BatchNorm + ``Linear(1024 -> 29)`` without bias: 29 pre-softmax scores per 20 ms step.

One whole utterance per call (batch 1, full length): the release's length masks and packed sequences then
change nothing, so they are left out.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

LABELS = "_'ABCDEFGHIJKLMNOPQRSTUVWXYZ "  # index 0 is the CTC blank; DeepSpeech v0.1.0's differ


@dataclass(frozen=True)
class DeepSpeech2Sizes:
    """Sizes of the network (the release: 161 frequency bins, hidden 1024, 5 layers, 29 classes)."""

    n_freq: int = 161
    hidden: int = 1024
    layers: int = 5
    classes: int = len(LABELS)
    conv_channels: int = 32

    @property
    def rnn_input(self) -> int:
        """Channels × frequency rows after the two convolutions (1312 for the release)."""
        rows = (self.n_freq + 2 * 20 - 41) // 2 + 1
        rows = (rows + 2 * 10 - 21) // 2 + 1
        return rows * self.conv_channels


class _Stack(nn.Module):
    """``conv.seq_module``: the convolution stack under the release's ``MaskConv`` key prefix."""

    def __init__(self, sizes: DeepSpeech2Sizes):
        super().__init__()
        c = sizes.conv_channels
        self.seq_module = nn.Sequential(
            nn.Conv2d(1, c, kernel_size=(41, 11), stride=(2, 2), padding=(20, 5)), nn.BatchNorm2d(c),
            nn.Hardtanh(0, 20, inplace=True),
            nn.Conv2d(c, c, kernel_size=(21, 11), stride=(2, 1), padding=(10, 5)), nn.BatchNorm2d(c),
            nn.Hardtanh(0, 20, inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq_module(x)


class _SequenceWise(nn.Module):
    """Applies ``module`` to ``(T, N, H)`` as ``(T * N, H)`` (key prefix ``module``)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps, batch = x.shape[:2]
        return self.module(x.reshape(steps * batch, -1)).view(steps, batch, -1)


class _BatchRNN(nn.Module):
    """Optional sequence-wise BatchNorm, a bidirectional LSTM, directions summed."""

    def __init__(self, input_size: int, hidden: int, batch_norm: bool):
        super().__init__()
        if batch_norm:
            self.batch_norm = _SequenceWise(nn.BatchNorm1d(input_size))
        self.rnn = nn.LSTM(input_size=input_size, hidden_size=hidden, bidirectional=True, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "batch_norm"):
            x = self.batch_norm(x)
        x, _ = self.rnn(x)
        return x.view(x.shape[0], x.shape[1], 2, -1).sum(2)


class DeepSpeech2Net(nn.Module):
    """``(1, 1, n_freq, T)`` normalised log spectrogram -> ``(T', classes)`` pre-softmax scores, T' = (T+1)//2."""

    def __init__(self, sizes: DeepSpeech2Sizes = DeepSpeech2Sizes()):
        super().__init__()
        self.sizes = sizes
        self.conv = _Stack(sizes)
        self.rnns = nn.Sequential(*(_BatchRNN(sizes.rnn_input if i == 0 else sizes.hidden, sizes.hidden, i > 0)
                                    for i in range(sizes.layers)))
        self.fc = nn.Sequential(_SequenceWise(nn.Sequential(nn.BatchNorm1d(sizes.hidden),
                                                            nn.Linear(sizes.hidden, sizes.classes, bias=False))))

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        x = self.conv(spectrogram)  # (1, C, F', T')
        x = x.reshape(x.shape[0], x.shape[1] * x.shape[2], x.shape[3]).permute(2, 0, 1)  # (T', 1, C·F')
        return self.fc(self.rnns(x))[:, 0]

    @classmethod
    def sizes_of(cls, state: dict[str, torch.Tensor]) -> DeepSpeech2Sizes:
        """The sizes a state dict in the release's layout was made with."""
        hidden = state["rnns.0.rnn.weight_hh_l0"].shape[1]
        layers = len({k.split(".")[1] for k in state if k.startswith("rnns.")})
        channels = state["conv.seq_module.0.weight"].shape[0]
        rnn_input = state["rnns.0.rnn.weight_ih_l0"].shape[1]
        for n_freq in range(1, 4096):  # the frequency bins that give this LSTM input width
            candidate = DeepSpeech2Sizes(n_freq, hidden, layers, state["fc.0.module.1.weight"].shape[0], channels)
            if candidate.rnn_input == rnn_input:
                return candidate
        raise ValueError(f"no spectrogram height gives an LSTM input of {rnn_input}")
