"""TAFT's inputs for a batch of frames (docs/gsmoothface.md, "Frames and crops"): the 3DMM face rendered at 224 on
nvdiffrast's pixels (``rendering.render_face``), 8-bit as the official PNGs, MAFB's augmented mask, both moved into the
``image_size`` image of the clip's static face box (``placement``), and the blend ``box (1 - m) + render m``.

When the box is the whole frame of an official 512 x 512 HDTF crop, ``rendering.mafb_blend`` reproduces TAFT's
Pillow un-crop bit for bit; here frames are any size and TAFT sees the face box, so the move is one bilinear resampling
(a choice of ours: the official pipeline never meets a frame that is not its own crop).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...face3d import ParametricFaceModel
from .placement import box_from_crop_grid, crop_to_box
from .rendering import mafb_mask, render_face, to_levels


@dataclass
class BlendedFaces:
    """``blended``, ``rendered`` (B, 3, S, S) in [-1, 1] and ``mask`` (B, 1, S, S) in [0, 1] in the box image."""

    blended: torch.Tensor
    rendered: torch.Tensor
    mask: torch.Tensor


class FaceBlender:
    """Renders Deep3DFaceRecon coefficients and blends them into box images of ``size`` pixels."""

    def __init__(self, face_model: ParametricFaceModel, size: int):
        if face_model.convention.name != "deep3dfacerecon":
            raise ValueError(f"GSmoothFace renders Deep3DFaceRecon coefficients, not {face_model.convention.name}")
        self.model, self.size = face_model, int(size)

    def to(self, device: torch.device | str) -> "FaceBlender":
        self.model = self.model.to(device)
        return self

    def blend(self, source: torch.Tensor, coeffs: torch.Tensor, transform_params: np.ndarray,
              box: tuple[int, int, int]) -> BlendedFaces:
        """``source`` (B, 3, S, S) box images in [-1, 1], ``coeffs`` (B, 257), ``transform_params`` (B, 5) of the
        face3d step (relative to the full frame), ``box`` (left, top, side) in the frame."""
        with torch.autocast(source.device.type, enabled=False):
            image, coverage = render_face(self.model, coeffs.float())
            render = to_levels(image.permute(0, 3, 1, 2)) / 255  # the official 8-bit render
            mask = mafb_mask(coverage, torch.float32).unsqueeze(1)
            grid = box_from_crop_grid(transform_params, box, self.size)
            moved = crop_to_box(torch.cat([render, mask], 1), grid.to(source.device))
        rendered = (moved[:, :3] * 2 - 1).to(source.dtype)
        weight = moved[:, 3:].clamp(0, 1).to(source.dtype)
        return BlendedFaces(source * (1 - weight) + rendered * weight, rendered, weight)
