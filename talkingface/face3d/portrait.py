"""AudioDVP's portrait crop (``utils/crop_portrait.py``): one fixed square box per video from the mean face box,
``crop_level`` face heights wide, its top at ``vertical_adjust`` times the face box's top, resized to 256 x 256."""
from __future__ import annotations

import numpy as np
from PIL import Image

CROP_LEVEL = 2.0  # scripts/demo.sh: --crop_level 2.0
VERTICAL_ADJUST = 0.2  # scripts/demo.sh: --vertical_adjust 0.2 (the script's own default is 0.3)
CROP_SIZE = 256


def portrait_box(landmarks: np.ndarray, valid: np.ndarray, crop_level: float = CROP_LEVEL,
                 vertical_adjust: float = VERTICAL_ADJUST) -> tuple[int, int, int]:
    """``(left, top, size)`` of the square crop from (T, 68, 2) frame landmarks of the frames with a face.

    The face box of a frame is its landmarks' bounding box (AudioDVP takes dlib's detector box from the
    face_recognition package); the boxes' integer mean, then, as AudioDVP: size = int(height * crop_level), the box
    widened symmetrically by (size - width) // 2, top = int(top * vertical_adjust)."""
    points = np.asarray(landmarks, np.float64)[np.asarray(valid, bool)]
    if len(points) == 0:
        raise ValueError("no frame has a face: no portrait box")
    count = len(points)
    top = int(np.floor(points[..., 1].min(1)).sum()) // count
    bottom = int(np.ceil(points[..., 1].max(1)).sum()) // count
    left = int(np.floor(points[..., 0].min(1)).sum()) // count
    right = int(np.ceil(points[..., 0].max(1)).sum()) // count
    size = int((bottom - top) * crop_level)
    left -= (size - (right - left)) // 2
    return left, int(top * vertical_adjust), size


def crop_portrait(frame: np.ndarray, box: tuple[int, int, int], out_size: int = CROP_SIZE) -> np.ndarray:
    """uint8 (out_size, out_size, 3): the box of ``frame`` (black outside the image) area-resized (PIL's box
    filter, like OpenCV's INTER_AREA that AudioDVP uses)."""
    left, top, size = box
    image = Image.fromarray(np.ascontiguousarray(frame)).crop((left, top, left + size, top + size))
    return np.asarray(image.resize((out_size, out_size), Image.BOX))


def portrait_params(frame_size: tuple[int, int], box: tuple[int, int, int], out_size: int = CROP_SIZE) -> np.ndarray:
    """The 5 crop parameters stored per frame: (frame width, frame height, left, top, scale = out_size / size)."""
    left, top, size = box
    return np.array([frame_size[0], frame_size[1], left, top, out_size / size], np.float64)


def to_portrait(points: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Frame pixel coordinates -> crop pixel coordinates (pixel centres at integers in both)."""
    scale = params[4]
    return (np.asarray(points, np.float64) - params[2:4] + 0.5) * scale - 0.5


def from_portrait(points: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Crop pixel coordinates -> frame pixel coordinates (inverse of ``to_portrait``)."""
    return (np.asarray(points, np.float64) + 0.5) / params[4] + params[2:4] - 0.5


def portrait_landmarks(landmarks: np.ndarray, valid: np.ndarray, frame_size: tuple[int, int],
                       crop_level: float = CROP_LEVEL, vertical_adjust: float = VERTICAL_ADJUST,
                       out_size: int = CROP_SIZE) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray]:
    """One video's portrait crop: ``(box, params (5,), landmarks (T, 68, 2) in crop pixels)`` from its frame
    ``landmarks`` (frames without a face already filled from a neighbour) and ``valid`` (the frames the box is
    averaged over); ``frame_size`` is (width, height)."""
    box = portrait_box(landmarks, valid, crop_level, vertical_adjust)
    params = portrait_params(frame_size, box, out_size)
    return box, params, np.stack([to_portrait(points, params) for points in landmarks])
