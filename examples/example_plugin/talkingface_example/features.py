"""Per-frame audio band energies: the example model's audio feature."""
from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
FPS = 25
BANDS = 8
CONTEXT = 1  # frames of context on each side


def band_energies(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """``(num_frames, (2*CONTEXT+1)*BANDS)`` float32 log band energies of 40 ms windows per frame.

    Audio shorter than the video is zero-padded at the end; longer audio is ignored past the last frame.
    """
    hop = SAMPLE_RATE // FPS
    padded = np.zeros(num_frames * hop, dtype=np.float32)
    n = min(len(audio), len(padded))
    padded[:n] = audio[:n]
    windows = padded.reshape(num_frames, hop) * np.hanning(hop).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(windows, axis=1)) ** 2
    edges = np.geomspace(2, spectrum.shape[1], BANDS + 1).astype(int)
    energies = np.stack([spectrum[:, a:b].sum(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)
    log_energy = np.log10(energies + 1e-6).astype(np.float32) / 3.0
    context = np.pad(log_energy, ((CONTEXT, CONTEXT), (0, 0)), mode="edge")
    return np.concatenate([context[i:i + num_frames] for i in range(2 * CONTEXT + 1)], axis=1)
