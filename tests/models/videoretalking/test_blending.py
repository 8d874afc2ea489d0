"""VideoReTalking's Laplacian pyramid blend (talkingface.models.videoretalking.blending) against the release's
``Laplacian_Pyramid_Blending_with_mask`` and ``inference.py``'s whole-frame blend around it
(``fixtures/official_blending.npz``, made by ``fixtures/make_blending_fixture.py`` from the release's code with
OpenCV 4.10).

Tolerance: the release computes in float32 (OpenCV's float32 ``pyrUp``/``pyrDown``/``resize``, float32 masks and
Laplacians), ours in float64, so the difference is the release's float32 rounding: ``fp32_bound(255, 25, depth)``
with 25 terms (the 5 x 5 pyramid kernel; the positive kernels summing to 1 do not amplify an error) and one layer
per Laplacian level (``depth = levels``; the whole-frame variant adds its two resizes: ``levels + 2``). The bound is
240 (6 levels) to 480 (whole frame) eps32 x 255 = 7.3e-3 to 1.5e-2 grey levels; measured on an AVX-512 EPYC: at
most 3.0 eps32 x 255 (9.2e-5). The Gaussian levels of uint8 frames are integers in both (OpenCV's 8-bit
``pyrDown`` rounds; ours reproduces it exactly). Breaks planted into our code miss the bound by 26x (uint8 levels
not rounded: 0.22 to 0.45 grey levels), 53x (uint8 frames resized as floats: 0.77), 157x to 399x (one Laplacian
level more or fewer: 1.5 to 4.3), 293x to 1900x (``pyrUp``'s bottom/right border reflected: 4.3 to 14) and 17000x
(``a`` and ``b`` swapped).

``blend_native`` runs the same float64 computations on the region as ``laplacian_pyramid_blend`` called on it, so
the two are compared bit for bit; pixels outside the grown box are copied and compared bit for bit.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import talkingface.models.videoretalking.blending as blending
from breaks import mutated
from numerics import REL64, fp32_bound, max_abs_diff
from talkingface.models.videoretalking.blending import (blend_native, blend_official, laplacian_pyramid_blend,
                                                        pyramid_levels)

HERE = Path(__file__).resolve().parent
SCALE = 255.0
KERNEL_TERMS = 25
RELEASE_CASES = ("u8_96x64_l6", "f32_64x32_l6", "u8_512_l10")
DSTSIZE_CASES = ("u8_64x48_l6", "u8_37x53_l6", "f32_37x53_l10")
WHOLE_CASES = ("whole_40x56", "whole_61x47")
WHOLE_LEVELS = 10


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    with np.load(HERE / "fixtures" / "official_blending.npz", allow_pickle=False) as data:
        return dict(data)


def pyramid_error(official, case: str) -> tuple[float, float]:
    """(max |ours - release|, bound) of one direct case; ``u8_512_l10`` is rebuilt from its 64 x 64 seeds and
    compared at the stored rows and columns."""
    a, b, mask = (official[f"{case}_{key}"] for key in ("a", "b", "mask"))
    levels = int(official[f"{case}_levels"])
    if case == "u8_512_l10":
        repeat, stride = int(official["repeat"]), int(official["stride"])
        a, b, mask = (np.repeat(np.repeat(x, repeat, axis=0), repeat, axis=1) for x in (a, b, mask))
        ours = blending.laplacian_pyramid_blend(a, b, mask, levels)[::stride, ::stride]
    else:
        ours = blending.laplacian_pyramid_blend(a, b, mask, levels)
    assert ours.dtype == np.float32 and ours.shape == official[f"{case}_out"].shape
    return max_abs_diff(ours, official[f"{case}_out"]), fp32_bound(SCALE, KERNEL_TERMS, depth=levels)


def whole_error(official, case: str) -> tuple[float, float]:
    """(max |ours - release|, bound) of the whole-frame blend before the release's ``np.uint8``."""
    ours = blending.blend_official(*(official[f"{case}_{key}"] for key in ("base", "top", "mask")), WHOLE_LEVELS)
    assert ours.dtype == np.float32
    return max_abs_diff(ours, official[f"{case}_float"]), fp32_bound(SCALE, KERNEL_TERMS, depth=WHOLE_LEVELS + 2)


def test_fixture_provenance(official):
    assert str(official["official_commit"]) == "d32e8e58248255e2d243eeaf3cba545dbe505ca8"


@pytest.mark.numerics
@pytest.mark.parametrize("case", RELEASE_CASES)
def test_pyramid_blend_matches_the_release(official, case):
    error, bound = pyramid_error(official, case)
    assert error <= bound, f"{case}: {error:.3g} > {bound:.3g}"


@pytest.mark.numerics
@pytest.mark.parametrize("case", DSTSIZE_CASES)
def test_indivisible_sizes_match_the_release_with_pyrup_dstsize(official, case):
    """The release fails on these sizes (np.subtract of a level and a pyrUp one row/column larger); ours equals its
    algorithm with ``cv2.pyrUp(x, dstsize=<finer level's size>)``."""
    assert "could not be broadcast" in str(official[f"fail_{case}"])
    error, bound = pyramid_error(official, f"dst_{case}")
    assert error <= bound, f"{case}: {error:.3g} > {bound:.3g}"


@pytest.mark.numerics
@pytest.mark.parametrize("case", WHOLE_CASES)
def test_whole_frame_blend_matches_the_release(official, case):
    error, bound = whole_error(official, case)
    assert error <= bound, f"{case}: {error:.3g} > {bound:.3g}"
    # the release's np.uint8 truncation: ours differs only where the release's float is within the bound of an integer
    frame = blend_official(*(official[f"{case}_{key}"] for key in ("base", "top", "mask")), WHOLE_LEVELS, uint8=True)
    assert frame.dtype == np.uint8 and frame.shape == official[f"{case}_out"].shape
    differ = frame != official[f"{case}_out"]
    floats = official[f"{case}_float"].astype(np.float64)[differ]
    assert np.all(np.abs(frame[differ].astype(int) - official[f"{case}_out"][differ]) == 1)
    assert np.all(np.abs(floats - np.rint(floats)) <= bound)


BREAKS = {  # what: (function, (old, new) edits, cases)
    "pyrUp's bottom/right border reflected": ("_up_axis", [("x[-1:]])", "(x[-2:-1] if n > 1 else x[-1:])])")],
                                              ("u8_96x64_l6", "dst_f32_37x53_l10", "whole_61x47")),
    "one Laplacian level more": ("laplacian_pyramid_blend", [("levels = int(levels)\n", "levels = int(levels) + 1\n")],
                                 ("u8_96x64_l6", "f32_64x32_l6")),
    "one Laplacian level fewer": ("laplacian_pyramid_blend", [("levels = int(levels)\n", "levels = int(levels) - 1\n")],
                                  ("u8_512_l10", "whole_40x56")),
    "uint8 levels not rounded": ("_gaussian_pyramid", [("round_u8 = x.dtype == np.uint8", "round_u8 = False")],
                                 ("u8_96x64_l6", "u8_512_l10", "whole_40x56")),
    "mask = 1 takes b": ("laplacian_pyramid_blend", [("return la * weight + lb * (1.0 - weight)",
                                                      "return lb * weight + la * (1.0 - weight)")],
                         ("u8_96x64_l6", "whole_61x47")),
    "frames resized as floats": ("_resize_frame", [("if frame.dtype == np.uint8", "if False")], ("whole_40x56",)),
}


@pytest.mark.numerics
@pytest.mark.parametrize("what", list(BREAKS))
def test_breaks_miss_the_bound(official, monkeypatch, what):
    name, edits, cases = BREAKS[what]
    mutated(monkeypatch, blending, name, *edits)
    for case in cases:
        error, bound = whole_error(official, case) if case.startswith("whole") else pyramid_error(official, case)
        assert error >= 10 * bound, f"{what}, {case}: {error:.3g} < 10 x {bound:.3g}"


def frames(dtype, height: int = 70, width: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base, top = (rng.uniform(0, 255, (height, width, 3)) for _ in range(2))
    mask = np.clip(rng.uniform(-0.5, 1.5, (height, width)), 0.0, 1.0)
    if dtype == np.uint8:
        base, top = (np.rint(x).astype(np.uint8) for x in (base, top))
    return base.astype(dtype), top.astype(dtype), mask


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8])
@pytest.mark.parametrize("box, margin", [((20, 50, 30, 60), 6), ((-5, 30, 70, 200), 3), ((10, 12, 10, 11), 0)])
def test_blend_native_blends_the_grown_box_only(dtype, box, margin):
    base, top, mask = frames(dtype)
    out = blend_native(base, top, mask, box, levels=10, margin=margin)
    assert out.dtype == base.dtype and out.shape == base.shape and not np.shares_memory(out, base)
    y0, y1 = max(0, box[0] - margin), min(base.shape[0], box[1] + margin)
    x0, x1 = max(0, box[2] - margin), min(base.shape[1], box[3] + margin)
    inside = np.zeros(base.shape[:2], bool)
    inside[y0:y1, x0:x1] = True
    assert np.array_equal(out[~inside], base[~inside])  # bit for bit
    region = (slice(y0, y1), slice(x0, x1))
    levels = pyramid_levels(y1 - y0, x1 - x0, 10)
    expected = np.clip(laplacian_pyramid_blend(top[region], base[region], mask[region], levels), 0, 255)
    expected = np.rint(expected).astype(np.uint8) if dtype == np.uint8 else expected.astype(dtype)
    assert np.array_equal(out[region], expected)  # the same float64 computations


def test_pyramid_levels_keep_the_coarsest_level_a_few_pixels():
    assert pyramid_levels(512, 512, 10, min_size=1) == 10  # the release's 1 x 1 base
    assert pyramid_levels(512, 512, 10) == 8               # 512 -> 4 in 7 halvings
    assert pyramid_levels(37, 53, 10) == 4                 # 37 -> 19 -> 10 -> 5
    assert pyramid_levels(300, 40, 3) == 3
    assert pyramid_levels(5, 100, 10) == 1                 # no halving leaves 4 pixels: an alpha blend
    assert pyramid_levels(6, 100, 10) == 1 and pyramid_levels(7, 100, 10) == 2


@pytest.mark.parametrize("dtype", [np.float64, np.uint8])
@pytest.mark.parametrize("size", [(64, 64), (37, 53)])
def test_mask_zero_gives_b_and_mask_one_gives_a(dtype, size):
    """The Laplacian pyramid collapses to its image (float64 rounding only), also with uint8's rounded levels."""
    base, top, _ = frames(dtype, *size, seed=1)
    for value, expected in ((0.0, base), (1.0, top)):
        mask = np.full(size, value)
        out = laplacian_pyramid_blend(top, base, mask, 6)
        assert max_abs_diff(out, expected) <= REL64 * SCALE
        native = blend_native(base, top, mask, (0, size[0], 0, size[1]), levels=6)
        if dtype == np.uint8:
            assert np.array_equal(native, expected)
        else:
            assert max_abs_diff(native, expected) <= REL64 * SCALE


def test_per_channel_mask_equals_the_2d_mask():
    base, top, mask = frames(np.float64, 40, 52, seed=2)
    flat = laplacian_pyramid_blend(top, base, mask, 5)
    assert np.array_equal(laplacian_pyramid_blend(top, base, np.repeat(mask[:, :, None], 3, axis=2), 5), flat)
    assert np.array_equal(laplacian_pyramid_blend(top, base, mask[:, :, None], 5), flat)


def test_bad_inputs_are_refused():
    base, top, mask = frames(np.float64, 16, 16)
    with pytest.raises(ValueError, match="levels"):
        laplacian_pyramid_blend(top, base, mask, 0)
    with pytest.raises(ValueError, match="mask"):
        laplacian_pyramid_blend(top, base, mask[:8], 3)
    with pytest.raises(ValueError, match="uint8 or float"):
        laplacian_pyramid_blend(top.astype(np.int32), base, mask, 3)
    with pytest.raises(ValueError, match="margin"):
        blend_native(base, top, mask, (0, 8, 0, 8), margin=-1)
