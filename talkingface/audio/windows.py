"""Fixed-width windows over a time axis, moved back to end with the signal at its end (Wav2Lip's rule)."""
from __future__ import annotations

import numpy as np

from ..errors import AudioError


def clamped_windows(sequence: np.ndarray, starts: np.ndarray, width: int, unit: str = "time steps") -> np.ndarray:
    """``(len(starts), width, ...)`` windows of an ``(L, ...)`` sequence; one past ``L`` is the last ``width`` steps.

    Raises AudioError when ``L < width``: no window fits (``unit`` names the steps in the message).
    """
    length = len(sequence)
    if length < width:
        raise AudioError(f"the audio is too short: {length} {unit}, one window needs {width}")
    starts = np.minimum(np.asarray(starts, dtype=np.int64), length - width)
    return sequence[starts[:, None] + np.arange(width)]
