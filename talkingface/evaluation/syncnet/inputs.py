"""Turning RGB frames and audio samples into the inputs SyncNet was trained on."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...audio import mfcc
from ...errors import AudioError, DataError

FACE_SIZE = 224
SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
MFCC_PER_FRAME = 4
WINDOW_FRAMES = 5
WINDOW_MFCC = WINDOW_FRAMES * MFCC_PER_FRAME


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Validate ``(T, H, W, 3)`` uint8 RGB frames and return them unchanged."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise DataError(f"expected (T, H, W, 3) uint8 RGB frames, got {frames.dtype} array of shape {frames.shape}")
    return frames


def frames_to_bgr224(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 RGB -> ``(T, 3, 224, 224)`` float32 BGR in [0, 255].

    The resize is ``cv2.resize(img, (224, 224))`` of the reference: bilinear with half-pixel
    centres, no antialiasing, rounded back to uint8 values because cv2 resizes uint8 to uint8.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames[..., ::-1])).to(device).permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (FACE_SIZE, FACE_SIZE):
        x = F.interpolate(x, size=(FACE_SIZE, FACE_SIZE), mode="bilinear", align_corners=False, antialias=False)
        x = x.round().clamp(0, 255)
    return x


def audio_to_int16_scale(audio: np.ndarray) -> np.ndarray:
    """``(N,)`` int16, or float in [-1, 1], -> ``(N,)`` float64 with int16 values, as a 16-bit WAV holds them.

    Float audio is multiplied by 32768, rounded and clipped to [-32768, 32767] (what ffmpeg does
    when it writes ``pcm_s16le``); integer audio is taken as int16 samples. Float audio far outside
    [-1, 1] is refused because it is almost certainly int16-scale already.
    """
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.size == 0:
        raise AudioError(f"expected non-empty mono audio of shape (N,), got shape {audio.shape}")
    if np.issubdtype(audio.dtype, np.integer):
        return audio.astype(np.float64)
    if not np.issubdtype(audio.dtype, np.floating):
        raise AudioError(f"expected int16 or float audio, got dtype {audio.dtype}")
    peak = float(np.max(np.abs(audio)))
    if not np.isfinite(peak) or peak > 2.0:
        raise AudioError(f"float audio must lie in [-1, 1], got peak {peak:g}; pass int16-scale samples as int16")
    return np.clip(np.rint(audio.astype(np.float64) * 32768.0), -32768, 32767)


def audio_to_mfcc(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """``(N,)`` audio at 16 kHz -> ``(13, T_mfcc)`` float32 MFCC of its int16-scale samples (100 Hz)."""
    if sample_rate != SAMPLE_RATE:
        raise AudioError(f"SyncNet needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; resample it first")
    return torch.from_numpy(mfcc(audio_to_int16_scale(audio), sample_rate).T.copy()).float()


def window_count(n_frames: int, n_samples: int) -> int:
    """Number of 5-frame windows the reference scores: ``min(frames, samples // 640) - 5``.

    Raises DataError when that leaves no window.
    """
    min_length = min(n_frames, n_samples // SAMPLES_PER_FRAME)
    count = min_length - WINDOW_FRAMES
    if count < 1:
        raise DataError(f"LSE needs at least {WINDOW_FRAMES + 1} frames of both video and audio at {FPS} fps; "
                        f"got {n_frames} frames and {n_samples} samples ({n_samples / SAMPLE_RATE:.3f} s)")
    return count
