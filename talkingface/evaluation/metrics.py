"""Built-in metrics that need no downloaded weights."""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..registry import register_metric
from .metric import Metric, VideoSample


def paired_frames(generated: VideoSample, reference: VideoSample) -> tuple[np.ndarray, np.ndarray]:
    """Frames of both videos cut to the shorter length; different frame sizes are an error."""
    a, b = generated.frames, reference.frames
    if a.shape[1:] != b.shape[1:]:
        raise DataError(f"{generated.path} frames are {a.shape[1:3]}, reference {reference.path} "
                        f"frames are {b.shape[1:3]}; they must have the same size")
    n = min(len(a), len(b))
    return a[:n], b[:n]


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB of two same-shape arrays, computed in float64 (no uint8 wrap-around).

    The MSE is pooled over every element, as ``skimage.metrics.peak_signal_noise_ratio`` does;
    identical inputs give ``inf``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr needs equal shapes, got {a.shape} and {b.shape}")
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


@register_metric("psnr")
class PSNRMetric(Metric):
    """PSNR over all frames of a video (MSE pooled over the video's pixels, RGB, range 255);
    the dataset value is the mean over videos."""

    higher_is_better = {"psnr": True}

    def score(self, generated: VideoSample, reference: VideoSample | None) -> dict[str, float]:
        a, b = paired_frames(generated, reference)
        return {"psnr": psnr(a, b)}

