"""Per-frame audio features as ``(T, C)`` vectors, one per video frame (the width rule).

DINet and LawDNet read 29-wide DeepSpeech logits; any other registered per-frame feature is turned into
one vector per video frame:

* ``(T, C)`` features are used as they are (``deepspeech``: C = 29);
* ``(T, a, b, ...)`` features are flattened per frame in C order (``mfcc`` (4, 13) -> 52), unless
  the flattened width exceeds ``max_width`` (256) under ``reduction="auto"``, in which case the
  feature's time axis is averaged first (``mel`` (80, 16) -> mean over its 16 time columns -> 80).

``reduction`` is ``"auto"``, ``"flatten"`` (always flatten) or ``"time_mean"`` (always average the
time axis, which the feature declares as ``AudioFeature.time_axis``).
"""
from __future__ import annotations

import numpy as np

from ..registry import AUDIO_FEATURES

MAX_FLAT_WIDTH = 256
REDUCTIONS = ("auto", "flatten", "time_mean")


def frame_vectors(features: np.ndarray, time_axis: int | None = None) -> np.ndarray:
    """``(T, ...)`` per-frame features -> ``(T, C)`` float32.

    ``time_axis`` (an axis of one frame's feature) is averaged out first when given; what is left
    is flattened in C order. ``(T,)`` gives ``(T, 1)``; ``(T, C)`` is returned unchanged.
    """
    features = np.asarray(features, dtype=np.float32)
    if features.ndim == 1:
        return features[:, None]
    if time_axis is not None:
        if features.ndim < 3:
            raise ValueError(f"features {features.shape} have no per-frame time axis to average")
        features = features.mean(axis=1 + time_axis)
    return features.reshape(len(features), -1)


def feature_time_axis(name: str, frame_shape: tuple[int, ...], reduction: str = "auto",
                      max_width: int = MAX_FLAT_WIDTH) -> int | None:
    """The per-frame time axis to average for feature ``name`` under ``reduction`` (``None``: flatten)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"audio reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if len(frame_shape) < 2 or reduction == "flatten":
        return None
    if reduction == "auto" and int(np.prod(frame_shape)) <= max_width:
        return None
    axis = AUDIO_FEATURES.get(name).time_axis
    if axis is None:
        raise ValueError(f"feature {name!r} {frame_shape}: its time axis is unknown; use reduction='flatten'")
    return int(axis)


def feature_width(name: str, frame_shape: tuple[int, ...], reduction: str = "auto") -> int:
    """C, the audio encoder's input width for feature ``name`` of per-frame shape ``frame_shape``."""
    axis = feature_time_axis(name, frame_shape, reduction)
    shape = [s for k, s in enumerate(frame_shape) if k != axis]
    return int(np.prod(shape)) if shape else 1
