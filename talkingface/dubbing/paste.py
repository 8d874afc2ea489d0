"""Paste-back of generated faces into the source frame: feathered alpha blending over a crop box.

Generic over models: the box is ``(top, bottom, left, right)`` slice bounds in the frame, and the alpha is
1 on the region the model regenerates (its mouth box) and falls smoothly to ~0 at the crop border, so no
seam shows where the generated crop meets the frame (the blurry/boxy mouth of hard pastes at HD).
"""
from __future__ import annotations

import numpy as np

from ..face.crops import resize_bilinear

Box4 = tuple[int, int, int, int]


def face_pixels(face: np.ndarray, box: Box4) -> np.ndarray:
    """The generated face (uint8, or float in [0, 1] as the model outputs) resized to the box, in 0..255."""
    face = np.asarray(face)
    values = face.astype(np.float32) if face.dtype == np.uint8 else np.asarray(face, np.float32) * 255.0
    top, bottom, left, right = box
    return resize_bilinear(values, (bottom - top, right - left))


def check_inside(frame: np.ndarray, box: Box4) -> None:
    """ValueError unless ``box`` lies inside ``frame``."""
    top, bottom, left, right = box
    if top < 0 or left < 0 or bottom > frame.shape[0] or right > frame.shape[1]:
        raise ValueError(f"paste box {box} is not inside the {frame.shape[0]}x{frame.shape[1]} frame")


def to_frame_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float pixel values in the frame's dtype (uint8: rounded and clipped)."""
    if dtype == np.uint8:
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return values.astype(dtype)


def smoothstep(t: np.ndarray) -> np.ndarray:
    """``3t² − 2t³`` of ``t`` clipped to [0, 1]: the soft ramp of every feathered alpha."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ramp(length: int, width_start: float, width_end: float) -> np.ndarray:
    """1-D alpha along one axis: 0 -> 1 over ``width_start`` pixels from the start, 1 -> 0 at the end."""
    centres = np.arange(length) + 0.5
    start = smoothstep(centres / width_start) if width_start > 0 else np.ones(length)
    end = smoothstep((length - centres) / width_end) if width_end > 0 else np.ones(length)
    return start * end


def feather_mask(height: int, width: int, margins: tuple[float, float, float, float], feather: float) -> np.ndarray:
    """``(height, width)`` float32 alpha: 1 inside ``margins`` (top, bottom, left, right pixels from the border),
    smoothly to ~0 at the border.

    Each side ramps (smoothstep of the distance from the border to the pixel centre) over
    ``min(feather, margin)`` pixels, so alpha is exactly 1 on the inner region; ``feather=0`` is 1 everywhere.
    """
    feather = max(float(feather), 0.0)
    top, bottom, left, right = margins
    rows = _ramp(height, min(feather, top), min(feather, bottom))
    cols = _ramp(width, min(feather, left), min(feather, right))
    return (rows[:, None] * cols[None, :]).astype(np.float32)


def paste_feathered(frame: np.ndarray, face: np.ndarray, box: Box4, alpha: np.ndarray) -> np.ndarray:
    """Alpha-blend the generated ``face`` (resized to ``box``) into ``frame`` with ``alpha`` (the box's size,
    e.g. from ``feather_mask``); returns a copy, unchanged outside the box."""
    check_inside(frame, box)
    top, bottom, left, right = box
    region = frame[top:bottom, left:right].astype(np.float32)
    blended = alpha[:, :, None] * face_pixels(face, box) + (1.0 - alpha[:, :, None]) * region
    out = frame.copy()
    out[top:bottom, left:right] = to_frame_dtype(blended, frame.dtype)
    return out


def paste_portrait(frame: np.ndarray, face: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """``alpha * face + (1 - alpha) * frame`` inside the portrait ``box`` (left, top, size), the (S, S) ``face``
    (float in [0, 1]) and ``alpha`` resized to the box; a copy, unchanged where alpha is 0 or outside the box."""
    left, top, size = box
    height, width = frame.shape[:2]
    rows = slice(max(top, 0), min(top + size, height))
    cols = slice(max(left, 0), min(left + size, width))
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return frame.copy()
    big_alpha = resize_bilinear(alpha[..., None].astype(np.float32), (size, size))[..., 0]
    big_face = resize_bilinear(np.asarray(face, np.float32) * 255.0, (size, size))
    inner = (slice(rows.start - top, rows.stop - top), slice(cols.start - left, cols.stop - left))
    weight = np.clip(big_alpha[inner], 0.0, 1.0)[..., None]
    touched = weight[..., 0] > 0
    region = frame[rows, cols].astype(np.float32)
    blended = weight * big_face[inner] + (1.0 - weight) * region
    out = frame.copy()
    patch = out[rows, cols]
    patch[touched] = to_frame_dtype(blended, frame.dtype)[touched]
    return out
