"""Mozilla DeepSpeech v0.1.0's ``BiRNN`` in PyTorch: 3 clipped-ReLU layers, a BiLSTM, 2 more layers.

``494 -> 2048 -> 2048 -> 4096 -> BiLSTM(2048 per direction, outputs concatenated) -> 2048 -> 29``
at the released sizes; every clipped ReLU is ``min(relu(x), 20)``. The sizes are read from the
weights, so smaller graphs with the same structure (the test fixture) run through the same code.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ...errors import CheckpointError

N_CEPSTRUM = 26  # MFCC coefficients per 20 ms step (n_input in DeepSpeech.py)
N_CONTEXT = 9  # steps of context on each side (n_context)
N_INPUT = N_CEPSTRUM * (2 * N_CONTEXT + 1)  # 494
N_CLASSES = 29  # space, a-z, apostrophe, CTC blank
RELU_CLIP = 20.0
FORGET_BIAS = 1.0  # BasicLSTMCell(forget_bias=1.0): added to the forget gate inside the cell


@dataclass(frozen=True)
class DeepSpeechSizes:
    """Layer widths: ``n_hidden_3`` feeds the BiLSTM, whose outputs are ``2 * n_cell`` wide."""

    n_input: int = N_INPUT
    n_hidden_1: int = 2048
    n_hidden_2: int = 2048
    n_hidden_3: int = 4096
    n_cell: int = 2048
    n_hidden_5: int = 2048
    n_classes: int = N_CLASSES

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], source: str) -> "DeepSpeechSizes":
        """The sizes implied by a state dict of ``DeepSpeechNet``; CheckpointError naming ``source``."""
        missing = [key for key in STATE_KEYS if key not in state]
        if missing:
            raise CheckpointError(f"{source} is not a DeepSpeech state dict: missing {', '.join(missing)}")
        try:
            sizes = cls(n_input=state["fc1.weight"].shape[1], n_hidden_1=state["fc1.weight"].shape[0],
                        n_hidden_2=state["fc2.weight"].shape[0], n_hidden_3=state["fc3.weight"].shape[0],
                        n_cell=state["lstm.weight_hh_l0"].shape[1], n_hidden_5=state["fc5.weight"].shape[0],
                        n_classes=state["fc6.weight"].shape[0])
        except IndexError as exc:
            raise CheckpointError(f"{source} has DeepSpeech weights of the wrong rank") from exc
        expected = {key: tuple(value.shape) for key, value in DeepSpeechNet(sizes, device="meta").state_dict().items()}
        wrong = [f"{key} {tuple(state[key].shape)} (expected {shape})" for key, shape in expected.items()
                 if tuple(state[key].shape) != shape]
        extra = sorted(set(state) - set(expected))
        if wrong or extra:
            raise CheckpointError(f"{source} has inconsistent DeepSpeech tensors: "
                                  f"{'; '.join(wrong + [f'unexpected {key}' for key in extra])}")
        return sizes


V010_SIZES = DeepSpeechSizes()

STATE_KEYS = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias",
              "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0",
              "lstm.weight_ih_l0_reverse", "lstm.weight_hh_l0_reverse", "lstm.bias_ih_l0_reverse",
              "lstm.bias_hh_l0_reverse", "fc5.weight", "fc5.bias", "fc6.weight", "fc6.bias")


class DeepSpeechNet(nn.Module):
    """``(T, n_input)`` normalised MFCC windows of one utterance -> ``(T, n_classes)`` raw logits.

    The BiLSTM sees the whole utterance at once; the dense layers around it may run in chunks of
    ``chunk_frames`` rows to bound memory, which changes nothing but the peak memory.
    """

    def __init__(self, sizes: DeepSpeechSizes = V010_SIZES, relu_clip: float = RELU_CLIP,
                 device: str | torch.device | None = None):
        super().__init__()
        self.sizes = sizes
        self.relu_clip = relu_clip
        factory = {"device": device}
        self.fc1 = nn.Linear(sizes.n_input, sizes.n_hidden_1, **factory)
        self.fc2 = nn.Linear(sizes.n_hidden_1, sizes.n_hidden_2, **factory)
        self.fc3 = nn.Linear(sizes.n_hidden_2, sizes.n_hidden_3, **factory)
        self.lstm = nn.LSTM(sizes.n_hidden_3, sizes.n_cell, bidirectional=True, **factory)
        self.fc5 = nn.Linear(2 * sizes.n_cell, sizes.n_hidden_5, **factory)
        self.fc6 = nn.Linear(sizes.n_hidden_5, sizes.n_classes, **factory)

    def _clipped_relu(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=0.0, max=self.relu_clip)

    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        """Layers 1-3: ``(T, n_input) -> (T, n_hidden_3)``."""
        x = self._clipped_relu(self.fc1(windows))
        x = self._clipped_relu(self.fc2(x))
        return self._clipped_relu(self.fc3(x))

    def decode(self, recurrent: torch.Tensor) -> torch.Tensor:
        """Layers 5-6: ``(T, 2 n_cell) -> (T, n_classes)`` logits."""
        return self.fc6(self._clipped_relu(self.fc5(recurrent)))

    def forward(self, windows: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        if windows.ndim != 2 or windows.shape[1] != self.sizes.n_input:
            raise ValueError(f"expected (T, {self.sizes.n_input}) windows, got {tuple(windows.shape)}")
        hidden = _chunked(self.encode, windows, chunk_frames)
        recurrent, _ = self.lstm(hidden.unsqueeze(1))  # time-major, batch of one
        return _chunked(self.decode, recurrent.squeeze(1), chunk_frames)


def _chunked(layer, rows: torch.Tensor, chunk_frames: int | None) -> torch.Tensor:
    """``layer`` applied to ``rows`` in slices of at most ``chunk_frames`` rows (all at once when None).

    The slices have equal sizes (within one row) rather than a short remainder: BLAS libraries switch
    to other kernels for very few rows, which would change the float rounding of the last rows.
    """
    if not chunk_frames or chunk_frames >= len(rows):
        return layer(rows)
    return torch.cat([layer(part) for part in torch.tensor_split(rows, math.ceil(len(rows) / chunk_frames))])
