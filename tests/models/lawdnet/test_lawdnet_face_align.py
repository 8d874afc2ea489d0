"""LawDNet's frontalised crop and soft mouth mask against the release's ``FaceAlign``/``SmoothSqMask``
(fixture made by tests/models/lawdnet/fixtures/make_align_fixture.py)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from talkingface.models.lawdnet.data import face_align
from talkingface.models.lawdnet.data.face_align import (align_face, align_matrix, crop_size, smooth_square_mask,
                                                        template_points)

from fixture_tools import load_module
from numerics import assert_fp32_close, fp32_bound, max_abs_diff

FIXTURES = Path(__file__).resolve().parent / "fixtures"
seeded = load_module(FIXTURES / "seeded.py", "lawdnet_seeded_align")


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "official_align.npz", allow_pickle=False) as data:
        return dict(data)


def test_the_fixture_records_the_official_commit_and_torchvision(official):
    """Made by the release's own code at the commit make_fixture.py recorded for the generator's fixture, with
    torchvision's ``Resize`` (``SmoothSqMask`` resizes with it), not a stand-in."""
    commit = str(official["official_commit"])
    assert re.fullmatch(r"[0-9a-f]{40}", commit), commit
    with np.load(FIXTURES / "official_outputs.npz", allow_pickle=False) as outputs:
        assert commit == str(outputs["official_commit"])
    assert str(official["torchvision_version"]) and str(official["torch_version"])


def test_sizes_and_template():
    assert crop_size(360) == (468, 360) and crop_size(120) == (156, 120)
    points = template_points(360)
    assert points.shape == (25, 2) and abs(points[12, 0] - 180) < 1e-4  # the nose bridge on the centre line


@pytest.mark.numerics
def test_mask_equals_the_release_and_its_documented_extent(official, monkeypatch):
    """A 5×5 blur and a resize in float32: bound 8 × 2 layers × sqrt(25) × eps32 (bit-equal with the kernels
    the fixture was made with, 1 ulp off with others); a blur of σ 1.5 misses by far more."""
    bound = fp32_bound(1.0, 25, depth=2)
    assert_fp32_close(smooth_square_mask(*official["mask"].shape).numpy(), official["mask"], bound, "mask")
    wider = face_align.gaussian_kernel(2, 1.5)
    monkeypatch.setattr(face_align, "gaussian_kernel", lambda: wider)
    assert max_abs_diff(smooth_square_mask(*official["mask"].shape).numpy(), official["mask"]) > 100 * bound
    mask = smooth_square_mask(468, 360).numpy()
    rows, cols = np.where(mask[:, 180] < 0.5)[0], np.where(mask[300] < 0.5)[0]
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (142, 443, 28, 331)  # reference §5, at M = 288


@pytest.mark.numerics
def test_crop_equals_the_release(official):
    """The release runs in float32 with a 1e-8 ridge on its least squares: matrix entries agree to 1.7e-5
    (translations ~100 px), i.e. sampling positions to ~4e-3 px; with this frame's gradients (<= 6 per px)
    pixel values may differ by 0.025. Bound 0.05 of 255; measured 6.6e-3."""
    frame, landmarks = seeded.align_inputs()
    crop, matrix = align_face(frame, landmarks, seeded.ALIGN_OUT_W)
    assert crop.shape == (*crop_size(seeded.ALIGN_OUT_W), 3)
    assert max_abs_diff(matrix, official["matrix"]) < 1e-4
    assert max_abs_diff(crop, official["crop"]) < 0.05
    assert official["crop"].std() > 20  # not a blank crop


def test_the_corner_normalisation_quirk_is_needed(official, monkeypatch):
    frame, landmarks = seeded.align_inputs()
    matrix = align_matrix(landmarks, seeded.ALIGN_OUT_W)
    h, w = crop_size(seeded.ALIGN_OUT_W)
    plain = np.linalg.inv(matrix)[None, None, :2, :2] @ np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1)[..., None]
    plain = plain[..., 0] + np.linalg.inv(matrix)[:2, 2]  # pixel centres mapped straight through the matrix
    monkeypatch.setattr(face_align, "warp_source_pixels", lambda *args: plain)
    crop, _ = align_face(frame, landmarks, seeded.ALIGN_OUT_W)
    assert max_abs_diff(crop, official["crop"]) > 20 * 0.05


def test_inverse_warp_paste_round_trips_and_leaves_no_holes():
    from talkingface.models.lawdnet.data import crop_pixels_of, paste_aligned, warp_source_pixels

    frame, landmarks = seeded.align_inputs()
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    crop, matrix = align_face(frame, landmarks, seeded.ALIGN_OUT_W)
    hw = crop_size(seeded.ALIGN_OUT_W)
    sources = warp_source_pixels(matrix, frame.shape[:2], hw)
    assert max_abs_diff(crop_pixels_of(matrix, sources, frame.shape[:2], hw)[..., 0],
                        np.meshgrid(np.arange(hw[1]), np.arange(hw[0]))[0]) < 1e-9  # exact inverse maps
    # pasting the crop itself back with alpha 1 restores the frame (two bilinear resamplings of a smooth image)
    inner = np.zeros(hw, np.float32)
    inner[10:-10, 10:-10] = 1
    back = paste_aligned(frame, crop, matrix, inner)
    covered = np.zeros(frame.shape[:2], bool)
    rows, cols = np.rint(sources[12:-12, 12:-12, 1]).astype(int), np.rint(sources[12:-12, 12:-12, 0]).astype(int)
    keep = (rows >= 0) & (rows < 200) & (cols >= 0) & (cols < 240)  # where alpha is 1 and the frame is
    covered[rows[keep], cols[keep]] = True
    assert np.abs(back[covered].astype(float) - frame[covered]).mean() < 1.0
    # a generated face of one colour lands on every pixel it covers (no holes); far outside nothing changes
    flat = paste_aligned(frame, np.full((*hw, 3), 200.0, np.float32), matrix, inner)
    assert covered.sum() > 5000 and np.all(flat[covered] == 200)
    outside = np.ones(frame.shape[:2], bool)
    (left, top), (right, bottom) = np.floor(sources.min((0, 1))).astype(int), np.ceil(sources.max((0, 1))).astype(int)
    outside[max(top - 2, 0):bottom + 3, max(left - 2, 0):right + 3] = False
    assert outside.sum() > 1000 and np.array_equal(flat[outside], frame[outside])
