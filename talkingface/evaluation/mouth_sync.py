"""Mouth sync, a reference-based lip-sync score that needs no downloaded weights.

Per video: the Pearson correlation between the mouth opening measured on the generated frames and on the
reference (ground-truth) frames. The opening is dlib's inner-lip gap, landmark 66.y − 62.y (iBUG order,
0-based), divided by the inter-ocular distance (between the two eye centres, the means of points 36–41 and
42–47), so that it does not depend on the face size and does not move with the jaw. Landmarks come from
``preprocess.face_backend`` (dlib by default, offline), detected on every frame without tracking or
smoothing, like ``lmd``. Frames where either video has no face are left out. The dataset value is the mean
over videos. A video whose series is (nearly) constant, or with fewer than ``MIN_FRAMES`` frames that have a
face in both videos (a generated video without any face included), has no correlation: it is skipped with a
logged reason and counted in ``mouth_sync_skipped``. A reference without any face is a ``DataError``.
"""
from __future__ import annotations

import logging
from typing import Iterable

import numpy as np

from ..errors import DataError
from ..face import FaceBackend, track_frames
from ..registry import register_metric
from .frames import same_size
from .metric import FaceBackendMetric, VideoSample

logger = logging.getLogger(__name__)

MIN_FRAMES = 3
MIN_STD = 2e-3  # inter-ocular distances (about 0.1 px on a 256 px demo face): below this a series counts as
#                 constant (an encoded still image measures about 5e-4: codec noise, not movement)


def lip_gap(landmarks: np.ndarray) -> np.ndarray:
    """``(T,)`` inner-lip gap of ``(T, 68, 2)`` landmarks, (66.y − 62.y) / inter-ocular distance; NaN where
    the landmarks are NaN."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (68, 2):
        raise ValueError(f"lip_gap needs (T, 68, 2) landmarks, got {points.shape}")
    left_eye, right_eye = points[:, 36:42].mean(axis=1), points[:, 42:48].mean(axis=1)
    interocular = np.linalg.norm(right_eye - left_eye, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = (points[:, 66, 1] - points[:, 62, 1]) / interocular
    gap[~np.isfinite(gap)] = np.nan
    return gap


def measure_lip_gap(backend: FaceBackend, frames: Iterable[np.ndarray]) -> np.ndarray:
    """``(T,)`` normalised inner-lip gap of each frame (NaN without a face), every frame detected, unsmoothed;
    an empty array when no frame has a face."""
    try:
        track = track_frames(backend, iter(frames), detect_every=1, max_gap=0, smoothing_window=1)
    except DataError:  # the tracker's "no face found in any of N frames"
        return np.zeros(0)
    gap = lip_gap(track.landmarks) if len(track) else np.zeros(0)
    gap[~track.valid] = np.nan
    return gap


def pearson(a: np.ndarray, b: np.ndarray) -> tuple[float, str | None]:
    """Pearson r of two series over the frames where both are finite (cut to the shorter length).

    Returns ``(r, None)``, or ``(nan, reason)`` when r is undefined: fewer than ``MIN_FRAMES`` common frames,
    or a series whose standard deviation is below ``MIN_STD``.
    """
    n = min(len(a), len(b))
    x, y = np.asarray(a[:n], dtype=np.float64), np.asarray(b[:n], dtype=np.float64)
    both = np.isfinite(x) & np.isfinite(y)
    if both.sum() < MIN_FRAMES:
        return float("nan"), f"only {int(both.sum())} frames have a face in both videos (need {MIN_FRAMES})"
    x, y = x[both] - x[both].mean(), y[both] - y[both].mean()
    sx, sy = float(np.sqrt((x * x).mean())), float(np.sqrt((y * y).mean()))
    if sx < MIN_STD or sy < MIN_STD:
        which = "generated" if sx < MIN_STD else "reference"
        return float("nan"), (f"the {which} mouth opening is constant (std {min(sx, sy):.2g} < {MIN_STD}), "
                              f"correlation undefined")
    return float(np.clip((x * y).mean() / (sx * sy), -1.0, 1.0)), None


@register_metric("mouth_sync")
class MouthSyncMetric(FaceBackendMetric):
    """Pearson r between the generated and reference inner-lip gap (dlib, every frame, unsmoothed); mean
    over the videos where it is defined. ``mouth_sync_skipped`` counts videos where it is not."""

    higher_is_better = {"mouth_sync": True}

    def reset(self) -> None:
        super().reset()
        self.skipped_videos: list[str] = []

    def gap(self, video: VideoSample) -> np.ndarray:
        """The video's lip-gap series, computed once and kept in ``video.cache``."""
        key = ("mouth_sync_gap", self.face_backend_name)
        if key not in video.cache:
            video.cache[key] = measure_lip_gap(self.face_backend(), video.iter_frames())
        return video.cache[key]

    def score(self, generated: VideoSample, reference: VideoSample | None) -> dict[str, float]:
        if reference is None:
            raise DataError(f"mouth_sync needs a reference video for {generated.path}")
        same_size(generated, reference)
        gap_reference = self.gap(reference)
        if not np.isfinite(gap_reference).any():
            raise DataError(f"mouth_sync: no frame of the reference {reference.path} has a face")
        gap_generated = self.gap(generated)  # a generated video without any face is skipped below, not an error
        r, reason = pearson(gap_generated, gap_reference)
        if reason is not None:
            logger.warning("mouth_sync: %s skipped: %s", generated.path, reason)
            self.skipped_videos.append(str(generated.path))
            return {}
        return {"mouth_sync": r}

    def compute(self) -> dict[str, float]:
        values = self.values.get("mouth_sync", [])
        result = {"mouth_sync": float(np.mean(values)) if values else float("nan")}
        if self.skipped_videos:
            result["mouth_sync_skipped"] = float(len(self.skipped_videos))
        return result
