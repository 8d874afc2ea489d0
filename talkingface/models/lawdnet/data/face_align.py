"""LawDNet's frontalised face crop (``tensor_processing.py::FaceAlign``), its soft mouth mask (``SmoothSqMask``)
and a feathered inverse warp for pasting the generated face back.

The crop: a least-squares similarity maps 25 of the 68 landmarks (brows, nose, eye corners, mouth corners)
onto a fixed template scaled to an ``out_W`` × ``1.3 out_W`` image (``out_W = 1.25 M``: 360 × 468 at mouth
288). Quirk kept: the release warps with ``F.affine_grid``/``grid_sample`` in their default half-pixel mode
after normalising pixel coordinates by ``W - 1`` (the corner convention), so the effective map from an
output pixel to a frame pixel is slightly scaled (``warp_source_pixels``); the crops the checkpoint was
trained on look like that. The release's similarity solves the least squares with a ``1e-8`` ridge in
normalised coordinates; here it is solved exactly (``face.crops.similarity_transform``): the matrices
agree to ~1e-8 relative, far below a pixel.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ....dubbing.paste import to_frame_dtype
from ....face.crops import similarity_transform

LANDMARKS_68_TO_25 = (*range(17, 37), 39, 42, 45, 48, 54)
TEMPLATE_RATIO = 1.6  # FaceAlign(ratio=1.6) in every LawDNet script
HEIGHT_OVER_WIDTH = 1.3
# the release's 25-point template (x, y in [0, 1]) before standardisation
TEMPLATE_25 = np.array([
    [2.13256e-04, 1.06454e-01], [7.52622e-02, 3.89150e-02], [1.81130e-01, 1.87482e-02], [2.90770e-01, 3.44891e-02],
    [3.93397e-01, 7.73906e-02], [5.86856e-01, 7.73906e-02], [6.89483e-01, 3.44891e-02], [7.99124e-01, 1.87482e-02],
    [9.04991e-01, 3.89150e-02], [9.80040e-01, 1.06454e-01], [4.90127e-01, 2.03352e-01], [4.90127e-01, 3.07009e-01],
    [4.90127e-01, 4.09805e-01], [4.90127e-01, 5.15625e-01], [3.66880e-01, 5.87326e-01], [4.26036e-01, 6.09345e-01],
    [4.90127e-01, 6.28106e-01], [5.54217e-01, 6.09345e-01], [6.13373e-01, 5.87326e-01], [1.21737e-01, 2.16423e-01],
    [3.34606e-01, 2.31733e-01], [6.45647e-01, 2.31733e-01], [8.58516e-01, 2.16423e-01], [2.54149e-01, 7.80233e-01],
    [7.26104e-01, 7.80233e-01]], dtype=np.float32)


def crop_size(out_w: int) -> tuple[int, int]:
    """``(height, width)`` of the aligned crop: ``(int(1.3 out_W), out_W)`` (468 × 360 at ``out_W`` 360)."""
    return int(HEIGHT_OVER_WIDTH * out_w), int(out_w)


def template_points(out_w: int, ratio: float = TEMPLATE_RATIO) -> np.ndarray:
    """``(25, 2)`` template positions in crop pixels: centred below the brows, scaled by the brow-to-nose span."""
    template = TEMPLATE_25.copy()
    up = (template[2] + template[7]) / 2
    mark = template[12]
    scale = (mark - up)[1]
    center = up + (mark - up) * 6.5 / 4
    center[0] = mark[0]
    standard = (template - center) / (ratio * scale)
    return standard * (out_w / 2) + np.array([out_w / 2, out_w * HEIGHT_OVER_WIDTH / 2], dtype=np.float32)


def align_matrix(landmarks: np.ndarray, out_w: int, ratio: float = TEMPLATE_RATIO) -> np.ndarray:
    """``(3, 3)`` similarity mapping frame pixels onto crop pixels, from ``(68, 2)`` landmarks."""
    matrix = similarity_transform(np.asarray(landmarks, np.float64)[list(LANDMARKS_68_TO_25)],
                                  template_points(out_w, ratio))
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def warp_source_pixels(matrix: np.ndarray, frame_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """``(h, w, 2)`` frame pixel ``(x, y)`` each crop pixel samples, as the release's ``warp_img_torch`` does
    (corner-normalised matrices fed to half-pixel ``affine_grid``/``grid_sample``)."""
    (height, width), (h, w) = frame_hw, out_hw
    inverse = np.linalg.inv(matrix)
    cols, rows = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    crop = np.stack([(2 * cols + 1) * (w - 1) / (2 * w), (2 * rows + 1) * (h - 1) / (2 * h), np.ones_like(cols)], -1)
    frame = crop @ inverse.T  # the matrix's own (corner-convention) frame pixels
    return np.stack([frame[..., 0] * width / (width - 1) - 0.5, frame[..., 1] * height / (height - 1) - 0.5], -1)


def sample_bilinear(image: torch.Tensor, pixels: np.ndarray) -> torch.Tensor:
    """``(B, C, H, W)`` image sampled at ``(h, w, 2)`` pixel positions (bilinear, zeros outside) -> ``(B, C, h, w)``."""
    height, width = image.shape[-2:]
    grid = torch.from_numpy(np.stack([(2 * pixels[..., 0] + 1) / width - 1, (2 * pixels[..., 1] + 1) / height - 1],
                                     -1)).to(image.dtype)
    return F.grid_sample(image, grid[None].expand(image.shape[0], -1, -1, -1), align_corners=False)


def warp_crop(frame: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The ``size = (h, w)`` crop of an ``(H, W, 3)`` frame under the ``(3, 3)`` alignment ``matrix``: float32
    in [0, 255], zeros where it samples outside the frame (as the release's ``grid_sample``)."""
    image = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)).permute(2, 0, 1)[None]
    crop = sample_bilinear(image, warp_source_pixels(matrix, frame.shape[:2], size))
    return crop.clamp(0, 255)[0].permute(1, 2, 0).numpy()


def align_face(frame: np.ndarray, landmarks: np.ndarray, out_w: int) -> tuple[np.ndarray, np.ndarray]:
    """The frontalised crop of an ``(H, W, 3)`` frame: ``((1.3 out_W, out_W, 3) float32 in [0, 255], matrix)``."""
    matrix = align_matrix(landmarks, out_w)
    return warp_crop(frame, matrix, crop_size(out_w)), matrix


def paste_scattered(frame: np.ndarray, face: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The release's paste-back (``FaceAlign.recover``): every crop pixel ``(j, i)`` is written to the frame pixel
    ``int(M^-1 (j, i, 1))`` (truncated, nearest scatter, no blending; later pixels win). Where the crop is
    larger on screen than 1.3 out_W x out_W pixels some frame pixels get none: the holes and seams the
    README reports. Kept as the ``official`` paste option; ``paste_aligned`` is the default. (Pixels that land
    outside the frame make the release's ``index_put`` fail or wrap around; here they are dropped.)"""
    (height, width), (h, w) = frame.shape[:2], face.shape[:2]
    cols, rows = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    inverse = np.linalg.inv(matrix)
    xy = np.stack([cols, rows, np.ones_like(cols)], -1) @ inverse[:2].T
    x, y = np.trunc(xy[..., 0]).astype(np.int64), np.trunc(xy[..., 1]).astype(np.int64)
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    out = frame.copy()
    out[y[inside], x[inside]] = to_frame_dtype(np.asarray(face, np.float32)[inside], frame.dtype)
    return out


def crop_pixels_of(matrix: np.ndarray, frame_pixels: np.ndarray, frame_hw: tuple[int, int],
                   out_hw: tuple[int, int]) -> np.ndarray:
    """The inverse of ``warp_source_pixels``: crop pixel ``(x, y)`` of each frame pixel ``(..., 2)``."""
    (height, width), (h, w) = frame_hw, out_hw
    own = np.stack([(frame_pixels[..., 0] + 0.5) * (width - 1) / width,
                    (frame_pixels[..., 1] + 0.5) * (height - 1) / height, np.ones(frame_pixels.shape[:-1])], -1)
    crop = own @ matrix.T
    return np.stack([(crop[..., 0] * 2 * w / (w - 1) - 1) / 2, (crop[..., 1] * 2 * h / (h - 1) - 1) / 2], -1)


def paste_aligned(frame: np.ndarray, face: np.ndarray, matrix: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend a generated aligned ``face`` (``(h, w, 3)`` in [0, 255]) back into ``frame`` (a copy, uint8 kept).

    Every frame pixel the crop covers samples the face and ``alpha`` (``(h, w)`` in [0, 1]) bilinearly at its
    crop position (the inverse warp): no holes or seams, unlike the release's nearest-index scatter
    (``FaceAlign.recover``), and a soft edge wherever ``alpha`` is soft.
    """
    (height, width), (h, w) = frame.shape[:2], face.shape[:2]
    corners = warp_source_pixels(matrix, (height, width), (h, w))[[0, 0, -1, -1], [0, -1, 0, -1]]
    left, top = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
    right, bottom = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, [width, height])
    if right <= left or bottom <= top:
        return frame.copy()
    cols, rows = np.meshgrid(np.arange(left, right, dtype=np.float64), np.arange(top, bottom, dtype=np.float64))
    where = crop_pixels_of(matrix, np.stack([cols, rows], -1), (height, width), (h, w))
    layers = np.concatenate([np.asarray(face, np.float32), np.asarray(alpha, np.float32)[..., None]], -1)
    sampled = sample_bilinear(torch.from_numpy(layers).permute(2, 0, 1)[None], where)[0].permute(1, 2, 0).numpy()
    weight = sampled[..., 3:]
    region = frame[top:bottom, left:right].astype(np.float32)
    blended = weight * sampled[..., :3] + (1 - weight) * region
    out = frame.copy()
    out[top:bottom, left:right] = to_frame_dtype(blended, frame.dtype)
    return out


def gaussian_kernel(radius: int = 2, sigma: float = 1.0) -> torch.Tensor:
    """The release's normalised ``(2r+1, 2r+1)`` float32 Gaussian (``Gaussian_bluring``)."""
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 / sigma**2 * (offsets[:, None] ** 2 + offsets[None, :] ** 2))
    kernel = torch.from_numpy(kernel).float()
    return kernel / kernel.sum()


def smooth_square_mask(height: int, width: int) -> torch.Tensor:
    """``(height, width)`` float32 ``SmoothSqMask`` multiplier: ~0 over the mouth region, 1 elsewhere.

    A 103 × 80 canvas with rows ``[32, 96)`` and columns ``[8, 72)`` set, blurred (r 2, σ 1, no padding:
    99 × 76), resized to the crop (torchvision's ``Resize``: bilinear, antialiased when shrinking), inverted.
    """
    canvas = torch.zeros(1, 1, 103, 80)
    canvas[..., int(0.4 * 80):int(1.2 * 80), int(0.1 * 80):int(0.9 * 80)] = 1
    blurred = F.conv2d(canvas, gaussian_kernel()[None, None])
    resized = F.interpolate(blurred, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return (1 - resized)[0, 0]
