"""DINet's face crop from 68 landmarks, its sizes and its mouth box (see docs/dinet_data.md).

Rules from MRzzm/DINet ``utils/data_processing.py::compute_crop_radius`` and the cropping slices of
``data_processing.py::crop_face_according_openfaceLM`` / ``inference.py``. Landmarks are cast to
integers first, as the official code does (``astype(int)``: truncation towards zero).
Boxes are ``(top, bottom, left, right)`` integer slice bounds: ``frame[top:bottom, left:right]``.
"""
from __future__ import annotations

import numpy as np

from ....face.crops import resize_bilinear
from ..networks.container import face_size, mouth_box  # one definition of the geometry

Box4 = tuple[int, int, int, int]

NOSE_BRIDGE, NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT = 29, 33, 48, 54


def int_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks cast like the official ``astype(np.int)`` (truncation); non-finite values raise ValueError."""
    landmarks = np.asarray(landmarks)
    if not np.all(np.isfinite(landmarks)):
        raise ValueError("landmarks contain NaN/inf (frames without a face)")
    return landmarks.astype(np.int64)


def frame_radii(window: np.ndarray, scale: float) -> np.ndarray:
    """Per-frame ``r_f = max((max_y - y29) * scale, (x54 - x48) * scale) // 2`` of a ``(k, 68, 2)`` window."""
    lm = int_landmarks(window)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"need a (k, 68, 2) landmark window, got {lm.shape}")
    radius_h = (lm[:, :, 1].max(axis=1) - lm[:, NOSE_BRIDGE, 1]) * scale
    radius_w = (lm[:, MOUTH_RIGHT, 0] - lm[:, MOUTH_LEFT, 0]) * scale
    return np.maximum(radius_h, radius_w) // 2


def crop_radius(window: np.ndarray, scale: float) -> int:
    """The window's shared crop radius ``r = (int(max r_f / 4) + 1) * 4`` (always a multiple of 4)."""
    return (int(frame_radii(window, scale).max() / 4) + 1) * 4


def crop_box(landmarks: np.ndarray, radius: int) -> Box4:
    """One frame's crop: rows ``[y29 - r, y29 + 2r + r//4)``, cols ``[x33 - r - r//4, x33 + r + r//4)``."""
    lm = int_landmarks(landmarks)
    quarter = radius // 4
    y29, x33 = int(lm[NOSE_BRIDGE, 1]), int(lm[NOSE_TIP, 0])
    return y29 - radius, y29 + 2 * radius + quarter, x33 - radius - quarter, x33 + radius + quarter


def rejection_reason(window: np.ndarray, scale: float, frame_size: tuple[int, int]) -> str | None:
    """Why the official rule rejects this ``(k, 68, 2)`` window at ``scale`` (``None``: accepted).

    ``frame_size`` is ``(height, width)``. Rejected when any frame's box leaves the image or when
    ``max r_f > 1.5 * min r_f`` (the face size changes too much within the window); NaN landmarks
    (no face) are rejected too.
    """
    window = np.asarray(window)
    if not np.all(np.isfinite(window)):
        return "no face in some frames"
    radii = frame_radii(window, scale)
    radius = crop_radius(window, scale)
    height, width = frame_size
    boxes = np.array([crop_box(frame, radius) for frame in window])
    if min(boxes[:, 0].min(), boxes[:, 2].min()) < 0:
        return "crop box leaves the image (top/left)"
    if boxes[:, 1].max() > height:
        return "crop box leaves the image (bottom)"
    if boxes[:, 3].max() > width:
        return "crop box leaves the image (right)"
    if radii.max() > radii.min() * 1.5:
        return "face size changes too much (max r_f > 1.5 min r_f)"
    return None


def mouth_mask(height: int, width: int, mouth: int) -> np.ndarray:
    """``(height, width)`` float32: 0 over the mouth box, 1 elsewhere (multiply a face by it to mask it)."""
    top, bottom, left, right = mouth_box(mouth)
    mask = np.ones((height, width), np.float32)
    mask[top:bottom, left:right] = 0
    return mask


def mouth_region(face, mouth: int, channels_last: bool = False):
    """The ``M x M`` mouth crop of a face (SyncNet's input): ``face[..., M/2:3M/2, M/8:9M/8]``.

    Works on arrays and tensors; channel-first ``(..., H, W)`` by default, ``(..., H, W, C)`` with
    ``channels_last``.
    """
    top, bottom, left, right = mouth_box(mouth)
    if channels_last:
        return face[..., top:bottom, left:right, :]
    return face[..., top:bottom, left:right]


def crop_face(frame: np.ndarray, box: Box4, size: tuple[int, int]) -> np.ndarray:
    """``frame[top:bottom, left:right]`` resized to ``size = (H, W)`` (bilinear, no antialias).

    The box must lie inside the frame (the rejection rule guarantees it); otherwise ValueError.
    """
    top, bottom, left, right = box
    height, width = frame.shape[:2]
    if top < 0 or left < 0 or bottom > height or right > width or bottom <= top or right <= left:
        raise ValueError(f"crop box {box} is not inside the {height}x{width} frame")
    return resize_bilinear(frame[top:bottom, left:right], size)
