"""The two OpenCV operations of the official mask code, in numpy and scipy (OpenCV is not a toolkit dependency).

- ``resize_linear_u8``: ``cv2.resize(image, (width, height))`` (INTER_LINEAR) of a uint8 image, bit for bit: OpenCV's
  fixed-point path (11-bit weights, the horizontal pass kept at scale 2048, the vertical pass
  ``((b0 * (S0 >> 4)) >> 16) + ((b1 * (S1 >> 4)) >> 16) + 2 >> 2``), the columns clamped through their weights,
  the rows through their indices, the same-size copy and the exact 2x shrink that OpenCV hands to INTER_AREA
  (``(a + b + c + d + 2) >> 2``). Equal to OpenCV 4.10.0 and 5.1.0 on every size tried (``tests/test_parsenet.py``).
- ``gaussian_blur``: ``cv2.GaussianBlur(mask, (k, k), sigma)`` of a float64 array: the separable kernel
  ``exp(-x^2 / (2 sigma^2))`` normalised to sum 1, the border reflected without repeating the edge
  (``BORDER_REFLECT_101``, scipy's ``mirror``, repeated for kernels wider than the image). It differs from OpenCV's
  by float64 rounding only (OpenCV computes the kernel in soft-float and sums in another order): ~1e-15.
"""
from __future__ import annotations

import numpy as np
import scipy.ndimage

COEF_BITS = 11
COEF_SCALE = 1 << COEF_BITS  # OpenCV's INTER_RESIZE_COEF_SCALE


def _weights(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's source index and fixed-point weights (1 - f, f) of each output pixel along one axis: the position
    ``(d + 0.5) * scale - 0.5`` rounded to float32, its floor and fraction; the weights ``saturate_cast<short>(w *
    2048)`` (round half to even)."""
    scale = 1.0 / (dst / src)  # OpenCV: inv_scale = (double)dst / src; scale = 1. / inv_scale
    position = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    index = np.floor(position).astype(np.int64)
    fraction = position - index.astype(np.float32)
    w1 = np.rint(fraction.astype(np.float64) * COEF_SCALE).astype(np.int64)
    w0 = np.rint((np.float32(1.0) - fraction).astype(np.float64) * COEF_SCALE).astype(np.int64)
    return index, w0, w1


def resize_linear_u8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(image, (width, height))`` of an ``(H, W)`` or ``(H, W, C)`` uint8 image (C = 1, 3 or 4), bit for
    bit; ``size = (height, width)``."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"resize_linear_u8 takes (H, W) or (H, W, 1|3|4) uint8 images, got {image.dtype} "
                         f"{image.shape}")
    height, width = (int(s) for s in size)
    if height <= 0 or width <= 0:
        raise ValueError(f"resize_linear_u8: size must be positive, got {size}")
    src_h, src_w = image.shape[:2]
    if (src_h, src_w) == (height, width):
        return image.copy()
    pixels = image.astype(np.int64)
    if (src_h, src_w) == (2 * height, 2 * width):  # OpenCV switches to INTER_AREA's fast 2x2 average
        total = pixels[0::2, 0::2] + pixels[0::2, 1::2] + pixels[1::2, 0::2] + pixels[1::2, 1::2]
        return ((total + 2) >> 2).astype(np.uint8)
    extra = (None,) * (image.ndim - 2)
    # columns: an index left of the image or past its last pixel takes that edge pixel with weight (1, 0)
    sx, ax0, ax1 = _weights(src_w, width)
    outside = (sx < 0) | (sx >= src_w - 1)
    sx = np.where(sx < 0, 0, np.where(sx >= src_w - 1, src_w - 1, sx))
    ax0, ax1 = np.where(outside, COEF_SCALE, ax0), np.where(outside, 0, ax1)
    sx1 = np.minimum(sx + 1, src_w - 1)
    rows = pixels[:, sx] * ax0[(None, slice(None), *extra)] + pixels[:, sx1] * ax1[(None, slice(None), *extra)]
    # rows: the weights stay, the two row indices are clamped into the image
    sy, by0, by1 = _weights(src_h, height)
    top, bottom = np.clip(sy, 0, src_h - 1), np.clip(sy + 1, 0, src_h - 1)
    b0, b1 = by0[(slice(None), None, *extra)], by1[(slice(None), None, *extra)]
    out = (((b0 * (rows[top] >> 4)) >> 16) + ((b1 * (rows[bottom] >> 4)) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def gaussian_kernel(ksize: int, sigma: float) -> np.ndarray:
    """``cv2.getGaussianKernel(ksize, sigma)`` in float64 (for ``sigma > 0``): ``exp(-x^2 / (2 sigma^2))`` at
    ``x = i - (ksize - 1) / 2``, divided by its sum."""
    if ksize < 1 or ksize % 2 == 0 or sigma <= 0:
        raise ValueError(f"gaussian_kernel needs an odd ksize >= 1 and sigma > 0, got {ksize}, {sigma}")
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) * 0.5
    kernel = np.exp(-0.5 / (sigma * sigma) * x * x)
    return kernel / kernel.sum()


def gaussian_blur(array: np.ndarray, ksize: int, sigma: float) -> np.ndarray:
    """``cv2.GaussianBlur(array, (ksize, ksize), sigma)`` of a 2-D array, in float64 (border reflect-101)."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"gaussian_blur takes a 2-D array, got {array.shape}")
    kernel = gaussian_kernel(ksize, sigma)
    rows = scipy.ndimage.correlate1d(array, kernel, axis=1, mode="mirror")
    return scipy.ndimage.correlate1d(rows, kernel, axis=0, mode="mirror")
