"""A stored clip cut into DINet's non-overlapping 9-frame clips, with crop plans and audio windows.

Official source: ``data_processing.py::crop_face_according_openfaceLM`` (clip ends
``range(9, n, 9)``, a random scale per clip, the rejection rule) and ``generate_training_json``
(features ``ds[start:start + 9]``). See docs/dinet_data.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .crops import crop_box, crop_radius, rejection_reason

CLIP_LENGTH = 9
HALF_WINDOW = 2  # the generator's audio window is feat[i - 2 : i + 3]


def clip_ends(num_frames: int, length: int = CLIP_LENGTH) -> list[int]:
    """Exclusive ends of the official clips: ``range(length, n, length)``.

    The trailing partial clip is dropped, and so is a last full clip ending exactly at ``n``
    (``range`` excludes ``n``): 18 frames give one clip ``[0, 9)``, 26 frames give two.
    """
    return list(range(length, num_frames, length))


def training_scale(rng: np.random.Generator) -> float:
    """The per-clip training scale ``1.05 + U[0, 0.1)`` (official: ``random.random() / 10 + 1.05``)."""
    return 1.05 + float(rng.random()) / 10


@dataclass(frozen=True)
class ClipCrop:
    """One accepted 9-frame clip: its official number, first frame, scale, radius and per-frame boxes."""

    number: int  # i in the official ``str(i).zfill(6)`` clip folders; start = 9 * number
    start: int
    scale: float
    radius: int
    boxes: tuple[tuple, ...]  # per frame: DINet's (top, bottom, left, right); LawDNet's 2x3 alignment matrix


@dataclass
class ClipPlan:
    """Accepted 9-frame clips of one stored clip, and why the others were dropped."""

    accepted: list[ClipCrop] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)  # clip number -> reason


def plan_clips(landmarks: np.ndarray, frame_size: tuple[int, int], rng: np.random.Generator,
               num_feature_frames: int | None = None, length: int = CLIP_LENGTH) -> ClipPlan:
    """Cut ``(T, 68, 2)`` landmarks into 9-frame clips and apply the official rejection rule.

    A scale is drawn for every candidate clip in order (accepted or not), so the scales of the
    accepted clips do not depend on which others were rejected. ``frame_size`` is ``(H, W)``.
    With ``num_feature_frames``, clips whose audio features end before the clip's last frame are
    dropped (the official ``generate_training_json`` only prints "skip" and keeps them).
    """
    plan = ClipPlan()
    for number, end in enumerate(clip_ends(len(landmarks), length)):
        scale = training_scale(rng)
        start = end - length
        if num_feature_frames is not None and num_feature_frames < end:
            plan.rejected[number] = "audio features shorter than the frames"
            continue
        window = landmarks[start:end]
        reason = rejection_reason(window, scale, frame_size)
        if reason is not None:
            plan.rejected[number] = reason
            continue
        radius = crop_radius(window, scale)
        boxes = tuple(crop_box(frame, radius) for frame in window)
        plan.accepted.append(ClipCrop(number, start, scale, radius, boxes))
    return plan


def generator_window(clip_features: np.ndarray, frame: int) -> np.ndarray:
    """The generator's 5 audio frames ``feat[i - 2 : i + 3]`` of a 9-frame clip's ``(9, C)`` features.

    Only frames 2..6 have a full window inside the clip (the official sampler only uses those).
    """
    if not HALF_WINDOW <= frame < len(clip_features) - HALF_WINDOW:
        raise IndexError(f"frame {frame} has no full 5-frame window in a clip of {len(clip_features)} frames")
    return clip_features[frame - HALF_WINDOW:frame + HALF_WINDOW + 1]


def syncnet_window(clip_features: np.ndarray) -> np.ndarray:
    """SyncNet's audio: all 9 frames of the clip (used for the 5 middle video frames 2..6, issue #118)."""
    if len(clip_features) != CLIP_LENGTH:
        raise ValueError(f"need the {CLIP_LENGTH} frames of a clip, got {len(clip_features)}")
    return clip_features


def clip_features(features: np.ndarray, crop: ClipCrop, length: int = CLIP_LENGTH) -> np.ndarray:
    """The ``(9, C)`` features of one accepted clip: ``features[start : start + 9]``."""
    out = features[crop.start:crop.start + length]
    if len(out) != length:
        raise ValueError(f"features end at {len(features)}, before clip {crop.number} ends")
    return out
