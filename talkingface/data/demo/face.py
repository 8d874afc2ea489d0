"""The demo face: scikit-image's astronaut photo, its 68 dlib landmarks, and a head-and-shoulders crop."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from skimage import data
from skimage.transform import resize

from ...errors import DataError

# Crop side as a multiple of the jaw width (landmarks 0-16) and how far below the landmark centre
# the crop centre sits: the face fills about half the frame, as in talking-head datasets.
CROP_SCALE = 2.1
CROP_DROP = 0.08


@dataclass(frozen=True)
class BaseFace:
    """The still frame every demo clip animates."""

    image: np.ndarray      # (size, size, 3) uint8 RGB
    landmarks: np.ndarray  # (68, 2) float64 (x, y) in iBUG order, in image pixels


@functools.lru_cache(maxsize=2)
def _dlib(upsample: int):
    from ...face import DlibBackend

    return DlibBackend({"dlib": {"upsample": upsample, "detect_max_side": 0}})


def detect_landmarks(image: np.ndarray, upsample: int = 0) -> np.ndarray | None:
    """68 landmarks ``(68, 2)`` float64 of the largest face in ``(H, W, 3)`` uint8 RGB, or None."""
    backend = _dlib(upsample)
    boxes = backend.detect(np.ascontiguousarray(image))
    if not boxes:
        return None
    return backend.landmarks(image, max(boxes, key=lambda box: box.area)).astype(np.float64)


@functools.lru_cache(maxsize=4)
def base_face(size: int = 256) -> BaseFace:
    """The astronaut photo cropped to head and shoulders, resized to ``size`` x ``size``."""
    photo = data.astronaut()
    # Upsampling once finds the face reliably; the photo also holds a weaker false face on the suit.
    landmarks = detect_landmarks(photo, upsample=1)
    if landmarks is None:
        raise DataError("dlib found no face in skimage.data.astronaut()")
    side = CROP_SCALE * (landmarks[16, 0] - landmarks[0, 0])
    centre = landmarks.mean(axis=0) + (0.0, CROP_DROP * side)
    left, top = np.round(centre - side / 2).astype(int)
    side = int(round(side))
    left = int(np.clip(left, 0, photo.shape[1] - side))
    top = int(np.clip(top, 0, photo.shape[0] - side))
    crop = photo[top:top + side, left:left + side]
    image = resize(crop, (size, size), order=3, anti_aliasing=True, preserve_range=True)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    scale = size / side
    # Pixel centres map as (x + 0.5) * scale - 0.5 under resize.
    landmarks = (landmarks - (left, top) + 0.5) * scale - 0.5
    image.setflags(write=False)  # shared through the cache
    landmarks.setflags(write=False)
    return BaseFace(image, landmarks)
