"""Where GSmoothFace's aligned renders land in TAFT's box image (``talkingface/models/gsmoothface/placement.py``;
docs/gsmoothface.md, "Frames and crops"): ``box_from_crop_grid`` + ``crop_to_box`` against ``face3d.align.crop_box``
(a hand-computed case, exact) and composed with ``face3d.resize_n_crop`` (Deep3DFaceRecon's PIL bicubic resize and
crop): sampling the aligned crop back into the box reproduces the frame there within the derived interpolation bound,
and plausible mistakes (the crop's ``up`` offset ignored, a half-pixel shift, ``s`` in place of the truncated size
ratio ``w / w0``) miss it by far (docs/testing.md, rule 5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from talkingface.face3d import crop_box, resize_n_crop
from talkingface.models.gsmoothface import placement
from talkingface.models.gsmoothface.placement import crop_to_box

from breaks import mutated
from numerics import fp32_bound, scale_of


def test_crop_pixel_lands_where_crop_box_says():
    """Frame 32 x 32, s = 1, an 8-pixel crop: (tx, ty) = (9.5, 19.3) gives left = trunc(16 - 4 + (9.5 - 16)) = 5
    and up = trunc(16 - 4 + (16 - 19.3)) = 8 (y of t is up). With the box the whole frame at its own size, crop pixel
    (i, j) is box pixel (8 + i, 5 + j) exactly (grid values k/8: exact in float32), and the rest of the box is 0."""
    w0 = h0 = 32
    crop = 8
    tx, ty = 9.5, 19.3
    assert crop_box((w0, h0), np.array([tx, ty]), 1.0, crop) == (32, 32, 5, 8)
    images = torch.arange(1, 2 * crop * crop + 1, dtype=torch.float32).reshape(1, 2, crop, crop)
    grid = placement.box_from_crop_grid(np.array([[w0, h0, 1.0, tx, ty]]), (0, 0, w0), w0, crop=crop)
    assert grid.shape == (1, w0, w0, 2)
    out = crop_to_box(images, grid)
    expected = torch.zeros(1, 2, h0, w0)
    expected[:, :, 8:16, 5:13] = images
    assert torch.equal(out, expected)


# ---- composed with resize_n_crop ------------------------------------------------------------------------------------
W0, H0 = 96, 80  # not square: a swapped width and height shows
S = 1.37  # w = trunc(96 s) = 131, h = trunc(80 s) = 109: w / w0 = 1.3646, h / h0 = 1.3625, not s
T = np.array([50.3, 37.6])  # crop_box: left 36, up 25; the 64-pixel crop lies 25+ pixels inside the resized frame
CROP = 64
QUAD = {"xx": 0.04, "yy": 0.03, "xy": 0.01, "x": 0.8, "y": -0.5, "c": 20.0}


def shading(x, y):
    """The synthetic frame: a quadratic in the pixel coordinates (x: column, y: row), values 20 to ~270."""
    q = QUAD
    return q["xx"] * (x - 40) ** 2 + q["yy"] * (y - 30) ** 2 + q["xy"] * x * y + q["x"] * x + q["y"] * y + q["c"]


def interpolation_bound() -> float:
    """PIL's bicubic (Keys, a = -0.5) upscaling interpolates: it reproduces quadratics exactly away from the image's
    border (both passes: rows of a quadratic are quadratics). The crop sampled at crop coordinates c is then
    g(c) = f(x(c), y(c)) with x, y affine in c (slopes hx = w0 / w, hy = h0 / h frame pixels per crop pixel):
    bilinear interpolation reproduces the xy term and misses a·x² by a·hx²·t(1 - t) <= a·hx² / 4 (t the fractional
    position), so the error is at most (|xx|·hx² + |yy|·hy²) / 4; float32 adds the ``fp32_bound`` of the value scale
    over 3 passes of 4-tap sums."""
    w, h, _, _ = crop_box((W0, H0), T, S, CROP)
    hx, hy = W0 / w, H0 / h
    interp = (abs(QUAD["xx"]) * hx ** 2 + abs(QUAD["yy"]) * hy ** 2) / 4
    return interp + fp32_bound(scale_of(shading(np.arange(W0)[None], np.arange(H0)[:, None])), terms=16, depth=3)


BOXES = [((20, 12, 56), 56), ((18, 10, 60), 40)]  # at its own size (the frame's pixels) and shrunk 1.5x
# the unbroken grids, made before any break is planted: the footprint every comparison is made on
GRIDS = {key: placement.box_from_crop_grid(np.array([[W0, H0, S, T[0], T[1]]]), *key, crop=CROP)[0].double().numpy()
         for key in BOXES}


def placed(box, size):
    """``crop_to_box`` of the float frame's aligned crop, the frame's continuous values at the box pixels, the mask
    of box pixels inside the crop's footprint (crop coordinates within [0, CROP - 1]: no zero padding) and the mask
    of those a whole crop pixel or more outside it (only padding)."""
    frame = shading(np.arange(W0, dtype=np.float64)[None], np.arange(H0, dtype=np.float64)[:, None])
    image = Image.fromarray(frame.astype(np.float32))  # float: no uint8 rounding to hide errors in
    assert image.mode == "F"
    crop, _, _ = resize_n_crop(image, np.zeros((5, 2)), T, S, float(CROP))
    params = np.array([[W0, H0, S, T[0], T[1]]])
    grid = placement.box_from_crop_grid(params, box, size, crop=CROP)
    out = crop_to_box(torch.from_numpy(np.array(crop, np.float32))[None, None], grid)[0, 0].double().numpy()
    left, top, side = box
    pixel = (np.arange(size) + 0.5) * side / size - 0.5
    reference = shading((left + pixel)[None], (top + pixel)[:, None])
    true_grid = GRIDS[(box, size)]
    cx, cy = ((true_grid[..., 0] + 1) * CROP - 1) / 2, ((true_grid[..., 1] + 1) * CROP - 1) / 2
    inside = (cx >= 0) & (cx <= CROP - 1) & (cy >= 0) & (cy <= CROP - 1)
    outside = (cx <= -1) | (cx >= CROP) | (cy <= -1) | (cy >= CROP)
    return out, reference, inside, outside, frame


def error_inside(box, size) -> float:
    out, reference, inside, _, _ = placed(box, size)
    return float(np.abs(out - reference)[inside].max())


@pytest.mark.parametrize("box,size", BOXES)
def test_crop_back_into_the_box_reproduces_the_frame(box, size):
    out, reference, inside, outside, frame = placed(box, size)
    assert inside.sum() > 0.4 * size * size  # the face crop covers a good part of the box
    if size == box[2]:  # at the box's own size the reference is the frame's own pixels
        left, top, side = box
        assert np.array_equal(reference, frame[top:top + side, left:left + side])
    assert outside.sum() > 0 and np.all(out[outside] == 0)  # the box beyond the crop stays empty
    error, bound = float(np.abs(out - reference)[inside].max()), interpolation_bound()
    assert error <= bound, f"{error:.3g} > {bound:.3g}"


BREAKS = {
    "up ignored": ("y_crop = (y_frame + 0.5) * h / h0 - 0.5 - up", "y_crop = (y_frame + 0.5) * h / h0 - 0.5"),
    "half-pixel shift": ("gx = (x_crop + 0.5) / crop * 2 - 1", "gx = x_crop / crop * 2 - 1"),
    "s for w / w0": ("x_crop = (x_frame + 0.5) * w / w0 - 0.5 - left", "x_crop = (x_frame + 0.5) * s - 0.5 - left"),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_placement_breaks_miss_the_bound(monkeypatch, name):
    box, size = BOXES[1]
    mutated(monkeypatch, placement, "box_from_crop_grid", *BREAKS[name])
    error, bound = error_inside(box, size), interpolation_bound()
    assert error >= 10 * bound, f"{name}: {error:.3g} vs bound {bound:.3g}"
