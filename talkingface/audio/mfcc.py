"""MFCC as python_speech_features 0.6 computes it: the audio front-end of SyncNet and the LSE metrics."""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import AudioError
from .waveform import preemphasis

_EPS = np.finfo(float).eps
_BLOCK_FRAMES = 2048  # 20 s of 10 ms frames per FFT block


def _round_half_up(value: float) -> int:
    """python_speech_features rounds window sizes half up, not to even as ``round`` does."""
    return math.floor(value + 0.5)


def _frames(signal: np.ndarray, length: int, step: int) -> np.ndarray:
    """``(T, length)`` frames, ``T = 1 + ceil((N - length) / step)`` (1 when N <= length), zero-padded at the end."""
    count = 1 if len(signal) <= length else 1 + math.ceil((len(signal) - length) / step)
    padded = np.zeros((count - 1) * step + length)
    padded[:len(signal)] = signal
    return sliding_window_view(padded, length)[::step]


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of the HTK mel scale."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def _mel_filterbank(nfilt: int, nfft: int, sample_rate: int, lowfreq: float, highfreq: float) -> np.ndarray:
    """``(nfilt, nfft // 2 + 1)`` float64 unnormalised triangles on FFT bins ``floor((nfft + 1) * hz / sr)``."""
    mels = np.linspace(_hz_to_mel(lowfreq), _hz_to_mel(highfreq), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz(mels) / sample_rate).astype(np.int64)
    bank = np.zeros((nfilt, nfft // 2 + 1))
    for j, (low, centre, high) in enumerate(zip(bins, bins[1:], bins[2:])):
        bank[j, low:centre] = (np.arange(low, centre) - low) / (centre - low)
        bank[j, centre:high] = (high - np.arange(centre, high)) / (high - centre)
    return bank


def _dct_ortho(size: int, count: int) -> np.ndarray:
    """``(count, size)`` float64: the first ``count`` rows of the orthonormal DCT-II matrix."""
    k = np.arange(count)[:, None]
    n = np.arange(size)
    basis = np.sqrt(2.0 / size) * np.cos(np.pi * k * (2 * n + 1) / (2 * size))
    basis[0] /= np.sqrt(2.0)
    return basis


def mfcc(signal: np.ndarray, sample_rate: int = 16000, winlen: float = 0.025, winstep: float = 0.01,
         numcep: int = 13, nfilt: int = 26, nfft: int = 512, lowfreq: float = 0, highfreq: float | None = None,
         preemph: float = 0.97, ceplifter: int = 22, append_energy: bool = True) -> np.ndarray:
    """``(T, numcep)`` float64 MFCC of ``(N,)`` samples, equal to ``python_speech_features.mfcc``.

    ``signal`` is used as given, without rescaling: SyncNet and LSE-C/D feed int16-scale values.
    ``T = 1 + ceil((N - frame_len) / frame_step)`` with ``frame_len = round(winlen * sample_rate)``;
    the last frame is zero-padded. ``append_energy`` replaces coefficient 0 by the log frame energy.
    """
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 1 or signal.size == 0:
        raise AudioError(f"expected a non-empty mono signal of shape (N,), got shape {signal.shape}")
    highfreq = sample_rate / 2 if highfreq is None else highfreq
    if not 0 <= lowfreq < highfreq <= sample_rate / 2:
        raise AudioError(f"need 0 <= lowfreq < highfreq <= {sample_rate / 2}, got {lowfreq} and {highfreq}")
    if numcep > nfilt:
        raise AudioError(f"numcep ({numcep}) cannot exceed nfilt ({nfilt})")
    frames = _frames(preemphasis(signal, preemph), _round_half_up(winlen * sample_rate),
                     _round_half_up(winstep * sample_rate))
    bank = _mel_filterbank(nfilt, nfft, sample_rate, lowfreq, highfreq).T
    dct = _dct_ortho(nfilt, numcep).T
    lifter = 1.0 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter) if ceplifter > 0 else None
    cepstra = np.empty((len(frames), numcep))
    # frames are independent: blocks keep the FFT's working memory fixed instead of ~1 MB per second of audio
    for start in range(0, len(frames), _BLOCK_FRAMES):
        block = slice(start, start + _BLOCK_FRAMES)
        power = np.abs(np.fft.rfft(frames[block], nfft)) ** 2 / nfft
        bands = power @ bank
        # exact zeros (digital silence) would give log(0); python_speech_features floors them at eps
        cepstra[block] = np.log(np.where(bands == 0, _EPS, bands)) @ dct
        if lifter is not None:
            cepstra[block] *= lifter
        if append_energy:
            energy = power.sum(axis=1)
            cepstra[block, 0] = np.log(np.where(energy == 0, _EPS, energy))
    return cepstra
