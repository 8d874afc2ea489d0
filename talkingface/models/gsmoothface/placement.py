"""Where GSmoothFace's 224 x 224 renders land in TAFT's image (docs/gsmoothface.md, "Frames and crops").

The official data are HDTF's 512 x 512 face crops, each video one static crop, and Deep3DFaceRecon ran on them: MAFB
un-crops the 224 render into that whole frame (``rendering.uncrop``, Pillow's bicubic paste, bit-exact). Here a clip
is any video, the face3d step's ``align_img`` parameters refer to the full frame, and TAFT sees one static square
``box`` per video (``face3d.portrait.portrait_box``, as HDTF's crops), resized to ``image_size``. The render and its
mask go from the aligned crop to that image through one affine map, sampled bilinearly (``grid_sample``): crop pixel
(row i, column j) is pixel (up + i, left + j) of the frame resized by s (``align.crop_box``), i.e. frame x =
(left + j + 0.5) W0 / w - 0.5, and frame x is box pixel (x - box_left + 0.5) S / box_size - 0.5 (rows alike).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...face3d.align import TARGET_SIZE, crop_box


def box_from_crop_grid(transform_params: np.ndarray, box: tuple[int, int, int], size: int,
                       crop: int = int(TARGET_SIZE)) -> torch.Tensor:
    """(B, size, size, 2) ``grid_sample`` grid (align_corners=False) that samples a (B, C, crop, crop) aligned crop at
    every pixel of the ``size`` x ``size`` image of ``box`` (left, top, side) in the frame; ``transform_params`` (B, 5)
    [W0, H0, s, tx, ty] as the face3d step stores them."""
    params = np.asarray(transform_params, np.float64).reshape(-1, 5)
    left_b, top_b, side = box
    pixel = (np.arange(size) + 0.5) * side / size - 0.5  # box pixel centre -> frame offset from the box corner
    grids = []
    for w0, h0, s, tx, ty in params:
        w, h, left, up = crop_box((int(w0), int(h0)), np.array([tx, ty]), float(s), crop)
        x_frame, y_frame = pixel + left_b, pixel + top_b
        x_crop = (x_frame + 0.5) * w / w0 - 0.5 - left
        y_crop = (y_frame + 0.5) * h / h0 - 0.5 - up
        gx = (x_crop + 0.5) / crop * 2 - 1
        gy = (y_crop + 0.5) / crop * 2 - 1
        grid = np.stack(np.broadcast_arrays(gx[None, :], gy[:, None]), -1)
        grids.append(grid)
    return torch.from_numpy(np.stack(grids)).float()


def crop_to_box(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(B, C, size, size): ``images`` (B, C, crop, crop) resampled into the box image (0 outside the crop)."""
    return F.grid_sample(images, grid.to(images.device, images.dtype), mode="bilinear", padding_mode="zeros",
                         align_corners=False)
