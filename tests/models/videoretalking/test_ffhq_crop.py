"""VideoReTalking's step-0 crop (talkingface.models.videoretalking.ffhq_crop) against the release's
``Croper.align_face`` and ``inference.py``'s paste region (``fixtures/official_crops.npz``, made by
``fixtures/make_crops_fixture.py`` from the release's code) on seeded landmarks: a centred face, one at the border, a
tilted one, one whose quad runs past the bottom, a portrait frame (where the release clips the quad's bottom to the
frame's width: ry = 360 in a 360 x 640 frame) and a face so large that the release shrinks the image first. The crop
and region are equal integers and the quad equal floats; breaks planted into our code (the bottom clipped to the
height, no half-pixel shift, a 5 % border) change them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import talkingface.models.videoretalking.ffhq_crop as crop_module
from breaks import mutated
from fixture_tools import load_module
from talkingface.models.videoretalking.ffhq_crop import ffhq_crop

HERE = Path(__file__).resolve().parent
seeded = load_module(HERE / "fixtures" / "seeded_crops.py", "videoretalking_seeded_crops")


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    with np.load(HERE / "fixtures" / "official_crops.npz", allow_pickle=False) as data:
        return dict(data)


def matches(official, case: str) -> bool:
    landmarks, size = seeded.seeded_landmarks(case)
    ours = crop_module.ffhq_crop(landmarks, size)  # through the module: the breaks replace it there
    return (tuple(official[f"{case}_crop"]) == ours.crop and np.array_equal(official[f"{case}_quad"], ours.quad)
            and tuple(official[f"{case}_region"]) == ours.region)


@pytest.mark.parametrize("case", list(seeded.CASES))
def test_crop_quad_and_region_equal_the_release(official, case):
    assert matches(official, case)
    landmarks, size = seeded.seeded_landmarks(case)
    result = ffhq_crop(landmarks, size)
    assert (result.shrink > 1) == (case == "huge")
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    lx, ly, rx, ry = (int(v) for v in result.quad)
    assert result.cut(frame).shape[:2] == (min(ry, result.crop[3] - result.crop[1]) - ly,
                                           min(rx, result.crop[2] - result.crop[0]) - lx)


BREAKS = {
    "bottom clipped to the height": ("ry = min(max(flat[3], flat[5]), width)", "ry = min(max(flat[3], flat[5]), height)",
                                     "portrait"),
    "no half-pixel shift": ("flat = (quad + 0.5).flatten()", "flat = quad.flatten()", "centred"),
    "5 % border": ("border = max(int(np.rint(qsize * 0.1)), 3)", "border = max(int(np.rint(qsize * 0.05)), 3)",
                   "tilted"),
}


@pytest.mark.parametrize("what", list(BREAKS))
def test_breaks_change_the_crop(official, what, monkeypatch):
    old, new, case = BREAKS[what]
    mutated(monkeypatch, crop_module, "ffhq_crop", old, new)
    assert not matches(official, case)


def test_bad_landmarks_are_refused():
    with pytest.raises(ValueError, match="68 landmarks"):
        ffhq_crop(np.zeros((5, 2)), (64, 64))
