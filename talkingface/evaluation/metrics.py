"""Built-in metrics that need no downloaded weights."""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..registry import register_metric
from .frames import frame_region, paired_chunks
from .metric import Metric, VideoSample


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
    """PSNR over all frames of a video (MSE pooled over the video's pixels, RGB, range 255) in the
    ``evaluate.region``; the dataset value is the mean over videos."""

    higher_is_better = {"psnr": True}

    def score(self, generated: VideoSample, reference: VideoSample | None) -> dict[str, float]:
        squared, count = 0.0, 0
        for a, b in paired_chunks(generated, reference, region=frame_region(self.config), config=self.config):
            squared += float(np.sum((a.astype(np.float64) - b.astype(np.float64)) ** 2))
            count += a.size
        if count == 0:
            raise DataError(f"psnr: no frame pair to compare in {generated.path} and {reference.path}")
        return {"psnr": float("inf") if squared == 0 else float(10.0 * np.log10(255.0**2 * count / squared))}

