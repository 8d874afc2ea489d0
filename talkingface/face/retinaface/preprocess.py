"""RetinaFace input preparation as GPEN's ``detect`` does it: float32 pixels, images whose longer side exceeds
1500 px shrunk by ``1000 / max(H, W)`` (OpenCV ``cv2.resize(img, (0, 0), fx=ss, fy=ss)``, bilinear), then BGR
minus (104, 117, 123).

The resize is written out in NumPy (OpenCV is not a dependency): OpenCV's generic ``INTER_LINEAR`` for float32
images. The output size is ``cvRound(side * ss)`` (half to even); output pixel ``d`` reads the source at
``f = float32((d + 0.5) / ss - 0.5)``, from pixels ``floor(f)`` and ``floor(f) + 1`` with float32 weights
``1 - frac(f)`` and ``frac(f)`` (a position before the first pixel or at/after the last one takes that pixel with
weight 1); the rows are interpolated first (``S0 * a0 + S1 * a1`` in float32), then the columns. This is
``cv2.resize`` with ``cv2.setUseOptimized(False)``; a default OpenCV wheel routes the call through Intel IPP,
whose results differ by up to ~0.014 grey levels (docs/retinaface.md).
"""
from __future__ import annotations

import numpy as np

BGR_MEAN = (104.0, 117.0, 123.0)  # subtracted from the B, G, R planes
MAX_SIDE = 1500                   # images with a longer side above this are shrunk ...
RESIZED_SIDE = 1000.0             # ... so that it becomes (about) this


def detection_scale(height: int, width: int) -> float:
    """``ss``: the factor the image is resized by before detection (1.0 up to 1500 px)."""
    longest = max(height, width)
    return RESIZED_SIDE / longest if longest > MAX_SIDE else 1.0


def linear_axis(src: int, dst: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's generic INTER_LINEAR along one axis of ``src`` pixels resized to ``dst`` (``scale``: source pixels per
    output pixel, as OpenCV computes it): source indices (first, second) and float32 weights (first, second);
    positions ``float32((d + 0.5) * scale - 0.5)``, one before the first pixel or at/after the last takes that pixel
    with weight 1."""
    position = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    first = np.floor(position)
    frac = (position - first).astype(np.float32)
    first = first.astype(np.int64)
    outside = (first < 0) | (first >= src - 1)
    frac[outside] = 0.0
    first = np.clip(first, 0, src - 1)
    second = np.minimum(first + 1, src - 1)
    return first, second, (np.float32(1.0) - frac).astype(np.float32), frac


def _axis(size: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``linear_axis`` for a resize by ``scale`` (output ``round(size * scale)`` pixels)."""
    return linear_axis(size, int(round(size * scale)), 1.0 / scale)


def resize_linear(image: np.ndarray, scale: float) -> np.ndarray:
    """(H, W, C) float32 -> (round(H * scale), round(W * scale), C) float32, OpenCV's generic bilinear resize."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    image = np.asarray(image, dtype=np.float32)
    x0, x1, a0, a1 = _axis(image.shape[1], scale)
    y0, y1, b0, b1 = _axis(image.shape[0], scale)
    rows = image[:, x0] * a0[None, :, None] + image[:, x1] * a1[None, :, None]
    return rows[y0] * b0[:, None, None] + rows[y1] * b1[:, None, None]


def prepare(image: np.ndarray, color: str = "rgb") -> tuple[np.ndarray, float]:
    """(H, W, 3) pixels in ``color`` order ('rgb' or 'bgr') -> ((h, w, 3) float32 BGR minus the mean, ``ss``)."""
    if color not in ("rgb", "bgr"):
        raise ValueError(f"color must be 'rgb' or 'bgr', got {color!r}")
    pixels = np.asarray(image, dtype=np.float32)
    if color == "rgb":
        pixels = pixels[..., ::-1]
    ss = detection_scale(*pixels.shape[:2])
    if ss != 1.0:
        pixels = resize_linear(pixels, ss)
    return pixels - np.asarray(BGR_MEAN, dtype=np.float32), ss
