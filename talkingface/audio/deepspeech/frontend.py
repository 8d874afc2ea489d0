"""DeepSpeech v0.1.0's input pipeline as DINet / AD-NeRF / VOCA's ``deep_speech.py`` runs it.

int16 sample values -> python_speech_features MFCC (26 coefficients, 25 ms window, 10 ms step) ->
every second row (20 ms steps) -> 9 zero rows of context on each side -> one 19 x 26 = 494 window per
step -> ``(x - mean) / std`` with one mean and one (population) std over the whole utterance.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...errors import AudioError
from ..mfcc import mfcc
from .network import N_CEPSTRUM, N_CONTEXT

SAMPLE_RATE = 16000


def int16_samples(wav: np.ndarray) -> np.ndarray:
    """``(N,)`` float64 holding int16 values, as a 16-bit WAV file read with scipy gives them.

    Float input in [-1, 1] is scaled by 32768, rounded and clipped to [-32768, 32767] (so int16 audio
    divided by 32768 comes back exactly); int16 input is taken as is.
    """
    wav = np.asarray(wav)
    if wav.dtype == np.int16:
        return wav.astype(np.float64)
    return np.clip(np.round(np.asarray(wav, dtype=np.float64) * 32768.0), -32768.0, 32767.0)


def mfcc_windows(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(T, 494)`` float32 normalised network input for ``(N,)`` int16-valued samples; ``T`` steps of 20 ms.

    ``T = ceil(R / 2)`` where ``R = 1 + ceil((N - 400) / 160)`` MFCC rows (1 when N <= 400).
    """
    if sample_rate != SAMPLE_RATE:
        raise AudioError(f"DeepSpeech v0.1.0 needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; resample first")
    rows = mfcc(samples, sample_rate, numcep=N_CEPSTRUM)[::2]
    context = np.zeros((N_CONTEXT, N_CEPSTRUM))
    padded = np.concatenate([context, rows, context])
    windows = sliding_window_view(padded, (2 * N_CONTEXT + 1, N_CEPSTRUM))[:, 0].reshape(len(rows), -1)
    std = windows.std()
    if not np.isfinite(std) or std == 0:
        raise AudioError(f"cannot normalise DeepSpeech input: its standard deviation is {std}")
    return ((windows - windows.mean()) / std).astype(np.float32)
