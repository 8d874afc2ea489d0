"""Waveform checks shared by the audio front-ends: input validation and pre-emphasis."""
from __future__ import annotations

import numpy as np

from ..errors import AudioError


def as_waveform(wav: np.ndarray) -> np.ndarray:
    """``(N,)`` float64 from ``(N,)`` float samples in [-1, 1] or int16 samples (divided by 32768).

    Raises AudioError on an empty or multi-channel array and on NaN or infinite samples.
    """
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise AudioError(f"expected a mono waveform of shape (N,), got shape {wav.shape}")
    if wav.size == 0:
        raise AudioError("the waveform is empty")
    if wav.dtype == np.int16:
        return wav / 32768.0
    if not np.issubdtype(wav.dtype, np.floating):
        raise AudioError(f"expected float samples in [-1, 1] or int16 samples, got dtype {wav.dtype}")
    bad = np.flatnonzero(~np.isfinite(wav))
    if bad.size:
        raise AudioError(f"the waveform has {bad.size} NaN or infinite samples (the first at sample {bad[0]}); "
                         "the audio decoder or speech synthesiser produced invalid output")
    return wav.astype(np.float64, copy=False)


def preemphasis(signal: np.ndarray, coefficient: float) -> np.ndarray:
    """``y[n] = x[n] - coefficient * x[n-1]`` with ``y[0] = x[0]``; ``(N,)`` float64."""
    signal = np.asarray(signal, dtype=np.float64)
    emphasised = signal.copy()
    emphasised[1:] -= coefficient * signal[:-1]
    return emphasised
