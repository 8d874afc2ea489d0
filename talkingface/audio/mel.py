"""The Wav2Lip / VideoReTalking log-mel spectrogram and its per-video-frame windows."""
from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import AudioError
from .waveform import as_waveform, preemphasis
from .windows import clamped_windows

SAMPLE_RATE = 16000
N_FFT = 800
HOP_LENGTH = 200
N_MELS = 80
FMIN, FMAX = 55.0, 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS_VALUE = 4.0
COLUMNS_PER_SECOND = SAMPLE_RATE / HOP_LENGTH  # 80 mel columns per second of audio
CHUNK_COLUMNS = 16  # 0.2 s of audio per video frame
PAD_MODES = ("reflect", "constant")
_BLOCK_FRAMES = 4096  # STFT frames per block: bounds memory on long audio (~26 MB of float64 per block)


@functools.cache
def _mel_basis() -> np.ndarray:
    """``(80, 401)`` float32 Slaney-normalised, Slaney-scale mel filterbank from 55 to 7600 Hz."""
    import librosa  # takes seconds to import; paid only when a spectrogram is computed

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)


@functools.cache
def _hann_window() -> np.ndarray:
    """``(800,)`` float64 periodic Hann window, as ``scipy.signal.get_window('hann', 800)``."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)


def _mel_magnitude(signal: np.ndarray, pad_mode: str) -> np.ndarray:
    """``(80, 1 + N // 200)`` float64 mel projection of the centred STFT magnitude of ``(N,)`` samples."""
    padded = np.pad(signal, N_FFT // 2, mode=pad_mode)
    frames = sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    basis = _mel_basis().astype(np.float64)
    blocks = [basis @ np.abs(np.fft.rfft(frames[start:start + _BLOCK_FRAMES] * _hann_window(), axis=1)).T
              for start in range(0, len(frames), _BLOCK_FRAMES)]
    return np.concatenate(blocks, axis=1)


def _normalised_db(mel: np.ndarray) -> np.ndarray:
    """Amplitude to dB relative to ``REF_LEVEL_DB``, then scaled symmetrically into [-4, 4]."""
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    scaled = 2.0 * MAX_ABS_VALUE * (db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS_VALUE
    return np.clip(scaled, -MAX_ABS_VALUE, MAX_ABS_VALUE)


def melspectrogram(wav: np.ndarray, sample_rate: int = SAMPLE_RATE, pad_mode: str = "reflect") -> np.ndarray:
    """Wav2Lip's normalised log-mel spectrogram: ``(80, 1 + N // 200)`` float32 in [-4, 4] from ``(N,)`` audio.

    ``wav``: 16 kHz samples, float in [-1, 1] or int16. ``pad_mode``: how the STFT pads ``n_fft // 2``
    samples at each end; ``"reflect"`` is what Wav2Lip and VideoReTalking were trained with (librosa
    < 0.9), ``"constant"`` (zeros) is librosa >= 0.9's default. They differ only in the first and last
    two columns.
    """
    if sample_rate != SAMPLE_RATE:
        raise AudioError(f"the mel spectrogram needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; "
                         f"resample first (talkingface.media.read_audio(path, sample_rate={SAMPLE_RATE}))")
    if pad_mode not in PAD_MODES:
        raise AudioError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    signal = preemphasis(as_waveform(wav), PREEMPHASIS)
    return _normalised_db(_mel_magnitude(signal, pad_mode)).astype(np.float32)


def mel_chunks(mel: np.ndarray, num_frames: int, fps: float = 25.0, step: int = CHUNK_COLUMNS) -> np.ndarray:
    """Wav2Lip's per-video-frame windows: ``(num_frames, 80, step)`` float32 from an ``(80, M)`` mel.

    Frame ``i`` gets columns ``[int(i * 80 / fps), + step)``: 0.2 s of audio *starting* at the frame's
    time, not centred on it. A window that would run past column ``M`` is the last ``step`` columns.
    """
    if mel.ndim != 2:
        raise AudioError(f"expected a mel spectrogram of shape (80, M), got shape {mel.shape}")
    if fps <= 0 or num_frames < 0:
        raise AudioError(f"need fps > 0 and num_frames >= 0, got fps={fps}, num_frames={num_frames}")
    starts = (np.arange(num_frames) * COLUMNS_PER_SECOND / fps).astype(np.int64)
    chunks = clamped_windows(mel.T, starts, step, unit="mel columns")
    return np.ascontiguousarray(chunks.transpose(0, 2, 1), dtype=np.float32)
