"""DINet's own parts of dubbing: the reference choice, the official paste, and its feather margins.

Official source: ``inference.py`` (the 5 references, the paste of the top ``3r`` rows). The frame/audio
alignment is shared (``talkingface.dubbing.plan``). See docs/dinet_data.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ....dubbing.paste import check_inside, face_pixels, feather_mask, paste_feathered, to_frame_dtype
from ....dubbing.plan import InferencePlan
from .crops import Box4
from .references import inference_reference_indices

INFERENCE_SCALE = 1.05


@dataclass(frozen=True)
class ReferencePlan:
    """One inference reference: the source frame to crop, its landmark window and its random scale."""

    source_frame: int
    landmark_window: np.ndarray  # (5,) source frame indices
    scale: float


def plan_references(plan: InferencePlan, rng: np.random.Generator) -> list[ReferencePlan]:
    """The 5 references, chosen like ``inference.py`` but seeded (``references.inference_reference_indices``)."""
    picks, scales = inference_reference_indices(len(plan), rng)
    return [ReferencePlan(int(plan.source_index[u]), plan.landmark_windows[u], float(s))
            for u, s in zip(picks, scales)]


# ---- paste-back ------------------------------------------------------------------------------
def box_radius(box: Box4) -> int:
    """The radius ``r`` of a ``crops.crop_box`` box (``3r + r//4`` rows, ``2r + 2(r//4)`` columns)."""
    top, bottom, left, right = box
    radius = round((bottom - top) * 4 / 13)
    if (bottom - top, right - left) != (3 * radius + radius // 4, 2 * radius + 2 * (radius // 4)):
        raise ValueError(f"{box} is not a DINet crop box (3.25r x 2.5r with r a multiple of 4)")
    return radius


def official_paste_region(box: Box4) -> Box4:
    """Rows ``[y29 - r, y29 + 2r)``, cols ``[x33 - 1.25r, x33 + 1.25r)``: the top ``3r`` rows of the crop."""
    top, _, left, right = box
    return top, top + 3 * box_radius(box), left, right


def paste_official(frame: np.ndarray, face: np.ndarray, box: Box4) -> np.ndarray:
    """``inference.py``: the face resized to the crop box, its top ``3r`` rows replacing the frame's.

    A hard rectangle, no blending; rows below ``y29 + 2r`` keep the original frame. Returns a copy.
    (Official: the float face is truncated into the uint8 frame; here it is rounded.)
    """
    check_inside(frame, box)
    rows = 3 * box_radius(box)
    pixels = face_pixels(face, box)
    top, _, left, right = box
    out = frame.copy()
    out[top:top + rows, left:right] = to_frame_dtype(pixels[:rows], frame.dtype)
    return out


def feather_margins(box: Box4) -> tuple[int, int, int, int]:
    """The mouth box's margins inside a DINet crop box: ``r`` above it, ``r/4`` below and at the sides."""
    radius = box_radius(box)
    quarter = radius // 4
    return radius, quarter, quarter, quarter


def dinet_feather_mask(box: Box4, feather: float) -> np.ndarray:
    """``(crop_h, crop_w)`` alpha over the whole crop box: 1 over the mouth box (crop rows ``[r, 3r)``, cols
    ``[r/4, r/4 + 2r)``), smoothly to ~0 at the border over ``min(feather, margin)`` pixels per side."""
    top, bottom, left, right = box
    return feather_mask(bottom - top, right - left, feather_margins(box), feather)


def paste_dinet_feathered(frame: np.ndarray, face: np.ndarray, box: Box4, feather: float) -> np.ndarray:
    """Blend the generated face over the whole crop box (3.25r rows) with ``dinet_feather_mask``; returns a copy.

    Unlike the official paste this uses the whole crop: the official ``3r`` rows end exactly at the mouth
    box's bottom edge, so a blend that is 1 on the mouth and seamless needs the generator's ``r/4`` rows
    below it. ``feather=0`` is a hard paste of the whole crop.
    """
    return paste_feathered(frame, face, box, dinet_feather_mask(box, feather))
