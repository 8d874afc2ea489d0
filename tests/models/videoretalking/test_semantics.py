"""D-Net's driving windows (talkingface.models.videoretalking.semantics) against the release's
``obtain_seq_index`` / ``find_crop_norm_ratio`` / ``transform_semantic`` and its step-3 expression override
(``fixtures/official_semantics.npz``, made by ``fixtures/make_semantics_fixture.py`` from the release's code): the same
clamped indices, the same float32 crop ratios (the nearest frame by 0.3 x expression + 0.7 x angle distance, the first
on ties: a frame repeating an earlier one's pose takes that one's scale), the same (73, 26) windows bit for bit, for a
video, a clip shorter than the window and one-shot mode. Breaks planted into our code (the window one frame late, the
ratio applied to tx instead of s, the last frame taken on ties) change the windows."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import talkingface.models.videoretalking.semantics as semantics_module
from breaks import mutated
from fixture_tools import load_module
from talkingface.models.videoretalking.semantics import crop_norm_ratio, driving_batch, window_indices

HERE = Path(__file__).resolve().parent
seeded = load_module(HERE / "fixtures" / "seeded_semantics.py", "videoretalking_seeded_semantics")
EXPRESSION = torch.linspace(-1, 1, 64)


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    with np.load(HERE / "fixtures" / "official_semantics.npz", allow_pickle=False) as data:
        return dict(data)


def ours(official, case: str) -> np.ndarray:
    frames, one_shot = seeded.CASES[case]
    semantics = official[f"{case}_semantics"]
    return driving_batch(semantics, range(frames), EXPRESSION, one_shot=one_shot).numpy()


def test_the_fixture_is_the_release_on_the_seeded_semantics(official):
    assert len(str(official["official_commit"])) == 40
    for case in seeded.CASES:
        assert np.array_equal(official[f"{case}_semantics"], seeded.seeded_semantics(case))


@pytest.mark.parametrize("case", list(seeded.CASES))
def test_driving_windows_equal_the_release(official, case):
    frames, one_shot = seeded.CASES[case]
    semantics = official[f"{case}_semantics"]
    assert np.array_equal(np.stack([window_indices(i, frames) for i in range(frames)]), official[f"{case}_index"])
    ratios = np.array([crop_norm_ratio(semantics[0 if one_shot else i], semantics) for i in range(frames)])
    assert np.array_equal(ratios, official[f"{case}_ratio"])
    driving = ours(official, case)
    assert driving.shape == (frames, 73, 26) and driving.dtype == np.float32
    assert np.array_equal(driving, official[f"{case}_driving"])
    if case == "video":  # frame 9 repeats frame 2's pose with another scale: its ratio is not 1
        assert abs(float(ratios[9]) - 1) > 0.01 and np.all(ratios[[0, 1, 3, 5]] == 1)


BREAKS = {
    "window one frame late": (semantics_module, "window_indices", "np.arange(index - half, index + half)",
                              "np.arange(index - half + 1, index + half + 1)"),
    "ratio applied to tx": (semantics_module, "driving_window", "crop[:, 0] = crop[:, 0] * ratio",
                            "crop[:, 1] = crop[:, 1] * ratio"),
    "last frame on ties": (semantics_module, "nearest_same_pose",
                           ("np.unique(rows, return_index=True", "np.unique(rows[::-1], return_index=True"),
                           ("return first[inverse.reshape(-1)]",
                            "return (len(rows) - 1 - first[inverse.reshape(-1)])[::-1]")),
}


@pytest.mark.parametrize("what", list(BREAKS))
def test_breaks_change_the_windows(official, what, monkeypatch):
    mutated(monkeypatch, *BREAKS[what])
    miss = np.abs(ours(official, "video") - official["video_driving"]).max()
    assert miss > 1e-3, (what, miss)
