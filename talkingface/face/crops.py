"""Face crops and alignment shared by the model plugins: square boxes, padded crops, similarity warps.

Pixel coordinates follow the landmarks: pixel ``(row i, column j)`` has its centre at ``(x=j, y=i)``.
A ``Box`` indexes like a slice, so an integer box the size of the output reproduces
``frame[top:bottom, left:right]`` exactly. Sampling is bilinear (``torch.nn.functional.grid_sample``).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .base import Box


def square_box(landmarks: np.ndarray, scale: float = 1.0) -> Box:
    """A square around the centre of the ``(N, 2)`` landmarks' bounding box; side = ``scale`` × its longer side."""
    bbox = Box.from_points(landmarks)
    half = scale * max(bbox.width, bbox.height) / 2
    cx, cy = bbox.center
    return Box(cx - half, cy - half, cx + half, cy + half)


def _to_tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()


def _to_image(tensor: torch.Tensor) -> np.ndarray:
    return tensor[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _sample(frame: np.ndarray, xs: np.ndarray, ys: np.ndarray, fill: int | None) -> np.ndarray:
    """Bilinear samples of ``frame`` at pixel coordinates ``xs, ys`` (both ``(h, w)``) as ``(h, w, 3) uint8``.

    Outside the frame the edge pixels repeat (``fill=None``) or the constant ``fill`` is used.
    """
    height, width = frame.shape[:2]
    grid = np.stack([(2 * xs + 1) / width - 1, (2 * ys + 1) / height - 1], axis=-1)
    grid_tensor = torch.from_numpy(grid.astype(np.float32))[None]
    image = _to_tensor(frame)
    if fill is None:
        return _to_image(F.grid_sample(image, grid_tensor, mode="bilinear", padding_mode="border", align_corners=False))
    # zero padding blends towards 0 at the border, so shift the image so that 0 means ``fill``
    sampled = F.grid_sample(image - fill, grid_tensor, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _to_image(sampled + fill)


def crop_and_resize(frame: np.ndarray, box: Box, size: int, fill: int | None = None) -> np.ndarray:
    """The ``box`` region of an ``(H, W, 3) uint8`` frame resized to ``(size, size, 3) uint8``.

    Where the box leaves the frame the edge pixels repeat (``fill=None``) or the value ``fill`` is used.
    """
    steps = (np.arange(size) + 0.5) / size
    xs = box.left + steps * box.width - 0.5
    ys = box.top + steps * box.height - 0.5
    grid_x, grid_y = np.meshgrid(xs, ys)
    return _sample(frame, grid_x, grid_y, fill)


def resize_image(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """An ``(H, W, 3) uint8`` frame resized to ``(height, width, 3) uint8`` (bilinear, antialiased when shrinking)."""
    resized = F.interpolate(_to_tensor(frame), size=(height, width), mode="bilinear", align_corners=False,
                            antialias=True)
    return _to_image(resized)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The ``(2, 3)`` rotation + uniform scale + translation mapping ``(N, 2)`` ``src`` closest to ``dst``.

    Least squares (Umeyama 1991) without reflection: ``dst ≈ M[:, :2] @ src + M[:, 2]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"similarity_transform needs two (N, 2) arrays with N >= 2, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centred, dst_centred = src - src_mean, dst - dst_mean
    src_variance = np.mean(np.sum(src_centred**2, axis=1))
    if src_variance == 0:
        raise ValueError("similarity_transform: all source points coincide")
    covariance = dst_centred.T @ src_centred / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / src_variance
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def warp_affine(frame: np.ndarray, matrix: np.ndarray, size: int, fill: int | None = None) -> np.ndarray:
    """``(size, size, 3) uint8``: ``frame`` warped by the ``(2, 3)`` ``matrix`` (frame pixels -> output pixels)."""
    linear, translation = matrix[:, :2], matrix[:, 2]
    out_x, out_y = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    targets = np.stack([out_x.ravel(), out_y.ravel()]) - translation[:, None]
    sources = np.linalg.solve(linear, targets)
    return _sample(frame, sources[0].reshape(size, size), sources[1].reshape(size, size), fill)


def align_to_template(frame: np.ndarray, landmarks: np.ndarray, template: np.ndarray, size: int,
                      indices: np.ndarray | list[int] | None = None,
                      fill: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Warp a face so its landmarks best match ``template``: ``(size, size, 3) uint8`` and the ``(2, 3)`` matrix.

    ``template`` is ``(N, 2)`` in output pixels; ``indices`` picks the N of the ``(68, 2)`` landmarks
    it corresponds to (all 68 when omitted). The matrix maps frame pixels to output pixels.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if indices is not None:
        points = points[np.asarray(indices)]
    matrix = similarity_transform(points, template)
    return warp_affine(frame, matrix, size, fill), matrix


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h, w, C)`` image resized to ``size = (H, W)`` like ``cv2.resize(INTER_LINEAR)``: half-pixel
    centres, edge clamping, no antialiasing. uint8 in, uint8 out (rounded); float in, float32 out."""
    image = np.asarray(image)
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    if tuple(tensor.shape[-2:]) != tuple(size):
        tensor = F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False, antialias=False)
    out = tensor[0].permute(1, 2, 0).numpy()
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out
