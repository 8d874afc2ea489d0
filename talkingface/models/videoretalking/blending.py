"""VideoReTalking's last blending step: the mouth of the enhanced frame laid over the original frame with a Laplacian
pyramid (``Laplacian_Pyramid_Blending_with_mask`` in the release's ``utils/inference_utils.py`` and its use at the
end of ``inference.py``), in NumPy (float64; OpenCV is not a toolkit dependency).

What the release does, kept here:

- ``A`` takes ``mask = 1`` and ``B`` takes ``mask = 0`` (``inference.py`` passes the enhanced frame as ``A``).
- ``levels`` Laplacian levels from ``levels - 1`` halvings: the release builds ``levels + 1`` Gaussian levels and never
  uses the last, so ``levels = 10`` on 512 x 512 ends at a 1 x 1 level.
- The Gaussian pyramids of ``A`` and ``B`` are computed in their own dtype: for uint8 frames (what ``inference.py``
  passes) every level is rounded to an integer by OpenCV's 8-bit ``pyrDown`` (``(sum + 128) >> 8``, the rounding
  compounding from level to level); float inputs are not rounded.
- OpenCV's ``pyrDown``: the 5-tap [1, 4, 6, 4, 1] / 16 kernel on both axes, borders reflected without repeating the
  edge (``BORDER_REFLECT_101``), output side ``(n + 1) // 2``. OpenCV's ``pyrUp``: zeros inserted and the same
  kernel times 4, the top/left border ``BORDER_REFLECT_101`` but the bottom/right one repeating the last pixel (the
  doubled grid is reflected, so the pixel past the end is the last one), output side ``2 n``.
- Generalisation: where a side is not divisible by ``2 ** (levels - 1)`` the release fails (``np.subtract`` of
  arrays of different shapes); here ``pyrUp`` is cut to the finer level's side (OpenCV's ``pyrUp(x, dstsize=)``,
  which equals the ``2 n`` result without its last row/column), so any size works and divisible sizes give the
  release's result.
- The release needs a 2-D mask (it appends an axis); a per-channel ``(H, W, C)`` mask is accepted here as well.
- The whole-frame variant (``blend_official``): frames resized to 512 x 512 with ``cv2.resize`` (bilinear; uint8
  frames through OpenCV's fixed-point path, the mask as float32), blended with ``levels = 10``, clipped to
  [0, 255], resized back to the frame's size (float32 bilinear) and truncated by ``np.uint8``. The resampling of the
  whole frame is what blurs HD output; ``blend_native`` blends only around the face, at the frame's resolution.
"""
from __future__ import annotations

import numpy as np

from ...face.parsenet.imageops import resize_linear_u8
from ...face.retinaface.preprocess import linear_axis

_KERNEL = (1.0, 4.0, 6.0, 4.0, 1.0)  # pyrDown's taps along one axis (divided by 16)
MIN_LEVEL_SIZE = 4  # blend_native: the short side of the coarsest pyramid level is at least this (when possible)

__all__ = ["MIN_LEVEL_SIZE", "blend_native", "blend_official", "laplacian_pyramid_blend", "pyramid_levels",
           "pyr_down", "pyr_up", "resize_linear"]


def _reflect101(index: np.ndarray, n: int) -> np.ndarray:
    """OpenCV's ``borderInterpolate(i, n, BORDER_REFLECT_101)`` of integer indices (0 for every index when n = 1)."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.mod(index, period)
    return np.where(index >= n, period - index, index)


def _down_axis(x: np.ndarray, axis: int) -> np.ndarray:
    """The [1, 4, 6, 4, 1] sum (not divided) at every second position along ``axis``: ``(n + 1) // 2`` values."""
    n = x.shape[axis]
    centres = 2 * np.arange((n + 1) // 2)
    return sum(w * np.take(x, _reflect101(centres + k - 2, n), axis=axis) for k, w in enumerate(_KERNEL))


def _up_axis(x: np.ndarray, axis: int, size: int) -> np.ndarray:
    """``x`` with zeros inserted, filtered by [1, 4, 6, 4, 1] (not divided), ``size`` (2 n or 2 n - 1) values along
    ``axis``: the element before the first is the second (reflect-101), the one after the last is the last."""
    x = np.moveaxis(x, axis, 0)
    n = x.shape[0]
    padded = np.concatenate([x[1:2] if n > 1 else x[:1], x, x[-1:]])
    out = np.empty((2 * n,) + x.shape[1:], dtype=np.float64)
    out[0::2] = padded[:-2] + 6.0 * padded[1:-1] + padded[2:]
    out[1::2] = 4.0 * (padded[1:-1] + padded[2:])
    return np.moveaxis(out[:size], 0, axis)


def pyr_down(x: np.ndarray, round_u8: bool = False) -> np.ndarray:
    """``cv2.pyrDown(x)`` in float64 along the first two axes: ``((H + 1) // 2, (W + 1) // 2, ...)``; with
    ``round_u8``, OpenCV's 8-bit result ``(sum + 128) >> 8`` (exact: the sums are integers below 2 ** 53)."""
    total = _down_axis(_down_axis(np.asarray(x, dtype=np.float64), 0), 1)
    return np.floor((total + 128.0) / 256.0) if round_u8 else total / 256.0


def pyr_up(x: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """``cv2.pyrUp(x, dstsize=(size[1], size[0]))`` in float64 along the first two axes; ``size`` = (height, width),
    each ``2 n`` (the default) or ``2 n - 1``."""
    x = np.asarray(x, dtype=np.float64)
    height, width = size if size is not None else (2 * x.shape[0], 2 * x.shape[1])
    if height not in (2 * x.shape[0], 2 * x.shape[0] - 1) or width not in (2 * x.shape[1], 2 * x.shape[1] - 1):
        raise ValueError(f"pyr_up: size {size} is not (2h or 2h - 1, 2w or 2w - 1) of {x.shape[:2]}")
    return _up_axis(_up_axis(x, 0, height), 1, width) / 64.0


def _gaussian_pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    """``levels`` Gaussian levels, the first ``x`` itself (float64); uint8 input is rounded at every level."""
    round_u8 = x.dtype == np.uint8
    pyramid = [np.asarray(x, dtype=np.float64)]
    for _ in range(levels - 1):
        pyramid.append(pyr_down(pyramid[-1], round_u8))
    return pyramid


def _check(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 or float, got {x.dtype}")
    return x


def laplacian_pyramid_blend(a: np.ndarray, b: np.ndarray, mask: np.ndarray, levels: int = 6) -> np.ndarray:
    """The release's ``Laplacian_Pyramid_Blending_with_mask(A, B, m, num_levels)``: ``a`` where ``mask`` is 1, ``b``
    where it is 0, blended per Laplacian level with the mask's Gaussian pyramid and collapsed.

    ``a``, ``b``: ``(H, W, C)`` uint8 or float images (values as given, e.g. [0, 255]); ``mask``: ``(H, W)`` or
    ``(H, W, C)`` in [0, 1]. Computed in float64 and returned unclipped, as float32 (float64 if an input is float64).
    ``levels`` >= 1 Laplacian levels (``levels - 1`` halvings); any size (see the module's docstring).
    """
    a, b, mask = _check("a", a), _check("b", b), _check("mask", mask)
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(f"a and b must be (H, W, C) of one shape, got {a.shape} and {b.shape}")
    channels_ok = mask.ndim == 2 or (mask.ndim == 3 and mask.shape[2] in (1, a.shape[2]))
    if mask.shape[:2] != a.shape[:2] or not channels_ok:
        raise ValueError(f"mask must be (H, W) or (H, W, 1 | C) of the image's size {a.shape[:2]}, got {mask.shape}")
    if int(levels) != levels or levels < 1:
        raise ValueError(f"levels must be an integer >= 1, got {levels}")
    levels = int(levels)
    out_dtype = np.float64 if np.float64 in (a.dtype, b.dtype, mask.dtype) else np.float32
    gauss_a, gauss_b, gauss_m = (_gaussian_pyramid(x, levels) for x in (a, b, mask))
    if mask.ndim == 2:
        gauss_m = [m[:, :, None] for m in gauss_m]

    def blend(level: int, la: np.ndarray, lb: np.ndarray) -> np.ndarray:
        weight = gauss_m[level]
        return la * weight + lb * (1.0 - weight)

    result = blend(levels - 1, gauss_a[-1], gauss_b[-1])  # the coarsest Gaussian level is the pyramid's base
    for level in range(levels - 2, -1, -1):
        size = gauss_a[level].shape[:2]
        detail_a = gauss_a[level] - pyr_up(gauss_a[level + 1], size)
        detail_b = gauss_b[level] - pyr_up(gauss_b[level + 1], size)
        result = pyr_up(result, size) + blend(level, detail_a, detail_b)
    return result.astype(out_dtype)


def _linear_axis(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's generic INTER_LINEAR along one axis (``linear_axis`` with OpenCV's ``1 / (dst / src)``), float64
    weights."""
    first, second, w0, w1 = linear_axis(src, dst, 1.0 / (dst / src))
    return first, second, w0.astype(np.float64), w1.astype(np.float64)


def resize_linear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(image, (width, height))`` (INTER_LINEAR, OpenCV's generic float path) of an ``(H, W)`` or
    ``(H, W, C)`` float image, in float64; ``size = (height, width)``."""
    image = np.asarray(image, dtype=np.float64)
    height, width = size
    if image.shape[:2] == (height, width):
        return image.copy()
    extra = (None,) * (image.ndim - 2)
    x0, x1, a0, a1 = _linear_axis(image.shape[1], width)
    y0, y1, b0, b1 = _linear_axis(image.shape[0], height)
    rows = image[:, x0] * a0[(None, slice(None), *extra)] + image[:, x1] * a1[(None, slice(None), *extra)]
    return rows[y0] * b0[(slice(None), None, *extra)] + rows[y1] * b1[(slice(None), None, *extra)]


def _resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 frames as OpenCV's fixed-point resize (uint8 out), float ones as its float path (float64 out)."""
    return resize_linear_u8(frame, size) if frame.dtype == np.uint8 else resize_linear(frame, size)


def blend_official(base: np.ndarray, top: np.ndarray, mask: np.ndarray, levels: int = 10, size: int = 512,
                   uint8: bool = False) -> np.ndarray:
    """``inference.py``'s whole-frame blend: ``base`` (the original frame), ``top`` (the enhanced frame, taken where
    ``mask`` is 1) and ``mask`` resized to ``size`` x ``size``, ``laplacian_pyramid_blend(top, base, mask, levels)``,
    clipped to [0, 255] and resized back to the frame's size.

    ``base``, ``top``: ``(H, W, 3)`` uint8 (as in the release) or float; ``mask``: ``(H, W)`` or ``(H, W, C)`` in
    [0, 1], converted to float32 as the release does (of an ``(H, W, C)`` mask channel 0 is used, as the release's
    ``full_mask[:, :, 0]``). Returns the float32 frame before the release's ``np.uint8``; with ``uint8``, that
    truncated (the release's frame).
    """
    base, top, mask = _check("base", base), _check("top", top), _check("mask", mask)
    if base.ndim != 3 or base.shape != top.shape or mask.shape[:2] != base.shape[:2]:
        raise ValueError(f"base and top must be (H, W, C) of one shape and mask (H, W[, C]) of their size, got "
                         f"{base.shape}, {top.shape} and {mask.shape}")
    height, width = base.shape[:2]
    square = (size, size)
    mask = resize_linear(mask.astype(np.float32), square)
    if mask.ndim == 3:
        mask = mask[:, :, 0]
    blended = laplacian_pyramid_blend(_resize_frame(top, square), _resize_frame(base, square), mask, levels)
    out = resize_linear(np.clip(blended.astype(np.float64), 0.0, 255.0), (height, width)).astype(np.float32)
    return out.astype(np.uint8) if uint8 else out


def pyramid_levels(height: int, width: int, levels: int, min_size: int = MIN_LEVEL_SIZE) -> int:
    """``levels`` capped so that the coarsest level's short side (``levels - 1`` halvings ``n -> (n + 1) // 2`` of
    ``min(height, width)``) is at least ``min_size``; 1 (a plain alpha blend) where the region is smaller still."""
    side, count = min(height, width), 1
    while count < levels and (side + 1) // 2 >= min_size:
        side, count = (side + 1) // 2, count + 1
    return count


def blend_native(base: np.ndarray, top: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int],
                 levels: int = 10, margin: int = 0, min_size: int = MIN_LEVEL_SIZE) -> np.ndarray:
    """The release's pyramid blend at the frame's own resolution, only around the face: ``box = (top, bottom, left,
    right)`` (bottom and right exclusive) grown by ``margin`` pixels and clipped to the frame is blended with
    ``laplacian_pyramid_blend(top, base, mask, pyramid_levels(h, w, levels, min_size))`` (h x w: the grown box) and
    clipped to [0, 255]; every pixel outside it is ``base``'s, bit for bit (the mask there is ignored).

    ``base``, ``top``: ``(H, W, C)`` frames of one dtype; ``mask``: ``(H, W)`` or ``(H, W, C)`` in [0, 1]. Returns a
    new frame of ``base``'s dtype: float frames get the clipped float values, uint8 frames them rounded (not
    truncated like the release's ``np.uint8``, which would darken the box's unblended pixels by 1 where the float
    collapse lands just below an integer).
    """
    base, top, mask = _check("base", base), _check("top", top), _check("mask", mask)
    if base.ndim != 3 or base.shape != top.shape or base.dtype != top.dtype or mask.shape[:2] != base.shape[:2]:
        raise ValueError(f"base and top must be (H, W, C) of one shape and dtype and mask (H, W[, C]) of their size, "
                         f"got {base.shape} {base.dtype}, {top.shape} {top.dtype} and {mask.shape}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    height, width = base.shape[:2]
    y0, y1, x0, x1 = (int(v) for v in box)
    y0, y1, x0, x1 = max(0, y0 - margin), min(height, y1 + margin), max(0, x0 - margin), min(width, x1 + margin)
    out = base.copy()
    if y1 <= y0 or x1 <= x0:
        return out
    region = (slice(y0, y1), slice(x0, x1))
    count = pyramid_levels(y1 - y0, x1 - x0, levels, min_size)
    blended = np.clip(laplacian_pyramid_blend(top[region], base[region], mask[region], count), 0.0, 255.0)
    out[region] = np.rint(blended) if base.dtype == np.uint8 else blended
    return out
