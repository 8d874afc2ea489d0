"""LawDNet's training crops on the shared 9-frame clip datasets (``dinet.data.dataset``, a ``CropStyle``).

``data_processing_正脸化.py`` cuts each video into DINet's 9-frame clips and saves every frame's frontalised
crop (``FaceAlign`` at out_W 640), which the datasets resize to the stage's size when loading. Here each frame's
alignment matrix is planned from its own landmarks at the stage's crop size and the crop is warped once, straight
at that size (one resampling instead of two). Clips with a frame without a face, or whose audio features end
early, are dropped; the aligned crop may reach outside the frame (zeros there, as the release's
``grid_sample``), so no box rule applies. The source face is masked with ``SmoothSqMask``.
"""
from __future__ import annotations

import numpy as np

from ...dinet.data.clips import CLIP_LENGTH, ClipCrop, ClipPlan, clip_ends
from ...dinet.data.dataset import CropStyle
from .face_align import align_matrix, crop_size, smooth_square_mask, warp_crop


def matrix_box(matrix: np.ndarray) -> tuple[float, ...]:
    """A ``(3, 3)`` similarity as the 6 numbers a ``ClipCrop`` keeps per frame (its top two rows)."""
    return tuple(float(v) for v in np.asarray(matrix, np.float64)[:2].ravel())


def box_matrix(box: tuple[float, ...]) -> np.ndarray:
    """The inverse of ``matrix_box``."""
    return np.vstack([np.asarray(box, np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])


def plan_aligned_clips(landmarks: np.ndarray, frame_size: tuple[int, int], rng: np.random.Generator,
                       num_feature_frames: int, size: tuple[int, int]) -> ClipPlan:
    """The accepted 9-frame clips of a ``(T, 68, 2)`` landmark track, each frame with its alignment matrix onto
    a ``size`` crop (``size`` = ``crop_size(out_W)``). ``frame_size`` and ``rng`` are unused (no box, no
    random scale)."""
    if crop_size(size[1]) != tuple(size):
        raise ValueError(f"{size} is not a LawDNet crop size (int(1.3 out_W), out_W)")
    plan = ClipPlan()
    for number, end in enumerate(clip_ends(len(landmarks), CLIP_LENGTH)):
        start = end - CLIP_LENGTH
        window = np.asarray(landmarks[start:end], np.float64)
        if num_feature_frames < end:
            plan.rejected[number] = "audio features shorter than the frames"
        elif not np.all(np.isfinite(window)):
            plan.rejected[number] = "no face in some frames"
        else:
            boxes = tuple(matrix_box(align_matrix(frame, size[1])) for frame in window)
            plan.accepted.append(ClipCrop(number, start, 1.0, 0, boxes))
    return plan


def crop_aligned(frame: np.ndarray, box: tuple[float, ...], size: tuple[int, int]) -> np.ndarray:
    """One planned crop: ``(h, w, 3)`` uint8."""
    return np.clip(np.rint(warp_crop(frame, box_matrix(box), size)), 0, 255).astype(np.uint8)


def source_mask(height: int, width: int, mouth: int) -> np.ndarray:
    """``SmoothSqMask`` as the datasets' ``(h, w)`` float32 multiplier (``mouth`` is implied by the size)."""
    return smooth_square_mask(height, width).numpy()


LAWDNET_CROPS = CropStyle("lawdnet_crops", plan_aligned_clips, crop_aligned, source_mask)
