"""LMD, the landmark distance between generated and reference faces; see ``docs/metrics_quality.md``."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError
from ..face import track_frames
from ..registry import register_metric
from .frames import same_size
from .metric import FaceBackendMetric, VideoSample

LANDMARK_REGIONS: dict[str, slice] = {"mouth": slice(48, 68), "face": slice(0, 68)}


def lmd(landmarks_a: np.ndarray, landmarks_b: np.ndarray, region: str = "mouth", centre: bool = True,
        norm: str = "l2") -> float:
    """Landmark distance of two ``(T, 68, 2)`` tracks in pixels: mean over frames and points of the distance
    between corresponding points of ``region`` (``mouth`` = iBUG 48-67, ``face`` = all 68).

    ``centre``: subtract each frame's mean ``region`` point from both sets first, so head translation does not
    count (RAD-NeRF/ER-NeRF ``LMDMeter``). ``norm``: ``l2`` Euclidean distance per point, or ``l1`` mean absolute
    coordinate difference (vico/IP_LAP, which also uses ``centre=False``).
    """
    if region not in LANDMARK_REGIONS:
        raise ConfigError(f"unknown LMD region {region!r}; choose one of {', '.join(LANDMARK_REGIONS)}")
    if norm not in ("l1", "l2"):
        raise ConfigError(f"unknown LMD norm {norm!r}; choose l1 or l2")
    a = np.asarray(landmarks_a, dtype=np.float64)
    b = np.asarray(landmarks_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.shape[1:] != (68, 2) or len(a) == 0:
        raise ValueError(f"lmd needs two equal non-empty (T, 68, 2) arrays, got {a.shape} and {b.shape}")
    a, b = a[:, LANDMARK_REGIONS[region]], b[:, LANDMARK_REGIONS[region]]
    if centre:
        a = a - a.mean(axis=1, keepdims=True)
        b = b - b.mean(axis=1, keepdims=True)
    difference = a - b
    if norm == "l1":
        return float(np.abs(difference).mean())
    return float(np.linalg.norm(difference, axis=-1).mean())


@register_metric("lmd")
class LMDMetric(FaceBackendMetric):
    """Mouth LMD (centred, Euclidean, frame pixels) on frames where the face backend finds a face in both videos.

    Landmarks come from ``preprocess.face_backend`` (dlib by default), detected on every frame, unsmoothed.
    """

    higher_is_better = {"lmd": False}

    def score(self, generated: VideoSample, reference: VideoSample | None) -> dict[str, float]:
        same_size(generated, reference)
        backend = self.face_backend()  # each video streamed once; both cut to the shorter length afterwards
        track_a = track_frames(backend, generated.iter_frames(), detect_every=1, max_gap=0, smoothing_window=1)
        track_b = track_frames(backend, reference.iter_frames(), detect_every=1, max_gap=0, smoothing_window=1)
        n = min(len(track_a), len(track_b))
        both = track_a.valid[:n] & track_b.valid[:n]
        if not both.any():
            raise DataError(f"LMD: no frame of {generated.path} has a face in both it and {reference.path}")
        return {"lmd": lmd(track_a.landmarks[:n][both], track_b.landmarks[:n][both])}
