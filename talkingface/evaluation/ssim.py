"""SSIM with named presets that reproduce the community's settings; see ``docs/metrics_quality.md``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import ConfigError, DataError
from ..face.crops import resize_image
from ..registry import register_metric
from .metric import Metric, VideoSample
from .frames import frame_region, paired_chunks


@dataclass(frozen=True)
class SSIMPreset:
    """One SSIM convention. ``grey``: BT.601 luma rounded to uint8 first, else SSIM per RGB channel then mean;
    ``size``: square side both frames are resized to first (``None`` keeps them); ``gaussian``: Gaussian window
    of std ``sigma`` and side ``win_size``, else a uniform ``win_size`` window; ``sample_covariance``: divide
    (co)variances by N-1 instead of N."""

    grey: bool
    size: int | None
    gaussian: bool
    win_size: int
    sigma: float
    sample_covariance: bool
    k1: float = 0.01
    k2: float = 0.03
    data_range: float = 255.0


SSIM_PRESETS: dict[str, SSIMPreset] = {
    # the older talking-face toolkit: cv2 grey, 224x224, structural_similarity(f1, f2) with skimage's defaults
    "skimage": SSIMPreset(grey=True, size=224, gaussian=False, win_size=7, sigma=1.5, sample_covariance=True),
    # TalkLip evaluation/visual_quality.py: 96x96 face crop, colour, Wang et al. (2004) settings
    "talklip": SSIMPreset(grey=False, size=96, gaussian=True, win_size=11, sigma=1.5, sample_covariance=False),
}


def grey_uint8(frames: np.ndarray) -> np.ndarray:
    """``(..., 3) uint8`` RGB to ``(...) uint8`` luma with cv2.cvtColor's fixed-point BT.601 weights and rounding."""
    rgb = np.asarray(frames, dtype=np.uint32)
    luma = (rgb[..., 0] * 4899 + rgb[..., 1] * 9617 + rgb[..., 2] * 1868 + (1 << 13)) >> 14
    return luma.astype(np.uint8)


def ssim_plane(a: np.ndarray, b: np.ndarray, preset: SSIMPreset) -> float:
    """Mean SSIM of two ``(H, W)`` planes, as ``skimage.metrics.structural_similarity`` computes it.

    The local statistics are filtered with reflected borders and the SSIM map is averaged without a border of
    ``(win_size - 1) // 2`` pixels.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    radius = (preset.win_size - 1) // 2
    if preset.win_size % 2 == 0 or min(a.shape) < preset.win_size:
        raise ValueError(f"SSIM needs an odd win_size no larger than the image, got {preset.win_size} "
                         f"for {a.shape}")

    def local_mean(x: np.ndarray) -> np.ndarray:
        if preset.gaussian:
            return ndimage.gaussian_filter(x, preset.sigma, mode="reflect", radius=radius)
        return ndimage.uniform_filter(x, preset.win_size, mode="reflect")

    count = preset.win_size**2
    cov_norm = count / (count - 1) if preset.sample_covariance else 1.0
    mean_a, mean_b = local_mean(a), local_mean(b)
    var_a = cov_norm * (local_mean(a * a) - mean_a**2)
    var_b = cov_norm * (local_mean(b * b) - mean_b**2)
    cov = cov_norm * (local_mean(a * b) - mean_a * mean_b)
    c1 = (preset.k1 * preset.data_range) ** 2
    c2 = (preset.k2 * preset.data_range) ** 2
    ssim_map = ((2 * mean_a * mean_b + c1) * (2 * cov + c2)) / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map[radius:ssim_map.shape[0] - radius, radius:ssim_map.shape[1] - radius].mean())


def _prepare(frame: np.ndarray, preset: SSIMPreset) -> np.ndarray:
    """An ``(H, W, 3) uint8`` frame resized and converted as ``preset`` says: ``(S, S)`` or ``(S, S, 3)``."""
    if preset.size is not None and frame.shape[:2] != (preset.size, preset.size):
        frame = resize_image(frame, preset.size, preset.size)
    return grey_uint8(frame) if preset.grey else frame


def ssim(a: np.ndarray, b: np.ndarray, preset: str = "skimage") -> float:
    """Mean SSIM of two same-shape ``(H, W, 3)`` or ``(T, H, W, 3)`` uint8 RGB arrays (video: mean over frames).

    ``preset`` names an entry of ``SSIM_PRESETS``.
    """
    if preset not in SSIM_PRESETS:
        raise ConfigError(f"unknown SSIM preset {preset!r}; choose one of {', '.join(SSIM_PRESETS)}")
    if a.shape != b.shape or a.ndim not in (3, 4) or a.shape[-1] != 3:
        raise ValueError(f"ssim needs two equal (H, W, 3) or (T, H, W, 3) arrays, got {a.shape} and {b.shape}")
    settings = SSIM_PRESETS[preset]
    scores = []
    for frame_a, frame_b in zip(a.reshape(-1, *a.shape[-3:]), b.reshape(-1, *b.shape[-3:])):
        x, y = _prepare(frame_a, settings), _prepare(frame_b, settings)
        if settings.grey:
            scores.append(ssim_plane(x, y, settings))
        else:
            scores.append(np.mean([ssim_plane(x[..., c], y[..., c], settings) for c in range(3)]))
    return float(np.mean(scores))


@register_metric("ssim")
class SSIMMetric(Metric):
    """SSIM of a video pair in the ``evaluate.region``, mean over frames, with the preset ``evaluate.ssim_preset``
    (default ``skimage``)."""

    higher_is_better = {"ssim": True}

    def score(self, generated: VideoSample, reference: VideoSample | None) -> dict[str, float]:
        preset = self.option("evaluate.ssim_preset", "skimage")
        total, count = 0.0, 0
        for a, b in paired_chunks(generated, reference, region=frame_region(self.config), config=self.config):
            total += ssim(a, b, preset) * len(a)
            count += len(a)
        if count == 0:
            raise DataError(f"ssim: no frame pair to compare in {generated.path} and {reference.path}")
        return {"ssim": total / count}
