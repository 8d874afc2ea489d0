"""Audio decoding to mono float32 at a chosen rate, and 16-bit WAV writing."""
from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np

from ..errors import MediaError
from ..io_utils import atomic_path


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream of ``path`` to mono float32 in [-1, 1] at ``sample_rate``.

    Returns ``(N,)`` float32. Raises MediaError naming the file when it is missing, corrupt or has
    no audio stream.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty")
    resampler = None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path}: no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks = []
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except MediaError:
        raise
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise MediaError(f"{path}: cannot decode audio ({exc})") from exc
    finally:
        resampler = None  # its filter graph (with threads) freed now, even when a traceback keeps this frame alive
    if not chunks:
        raise MediaError(f"{path}: audio stream holds no samples")
    return np.concatenate(chunks).astype(np.float32, copy=False)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = 16000) -> Path:
    """Write mono float samples in [-1, 1] (or int16) as a 16-bit PCM WAV file, atomically."""
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise MediaError(f"{path}: expected mono samples of shape (N,), got {samples.shape}")
    if samples.dtype != np.int16:
        samples = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(sample_rate)
            handle.writeframes(samples.tobytes())
    return Path(path)
