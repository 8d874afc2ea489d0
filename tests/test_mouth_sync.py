"""mouth_sync (dlib inner-lip gap correlation) and the generated-vs-reference PNG strip, on a synthetic demo clip."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from talkingface.data.demo import animate, base_face, write_demo_clip
from talkingface.errors import ConfigError, DataError
from talkingface.evaluation import VideoSample
from talkingface.evaluation.mouth_sync import MouthSyncMetric, lip_gap, pearson
from talkingface.evaluation.strip import LABEL_WIDTH, strip_indices, write_strip
from talkingface.media import VideoWriter, read_frames
from talkingface.registry import METRICS

FPS = 25


def _write(path: Path, frames) -> Path:
    with VideoWriter(path, FPS, preset="ultrafast") as writer:
        for frame in frames:
            writer.write(frame)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Demo clip 0 (256 px) and copies of it: time-reversed, shifted by 12 frames, and with the mouth frozen
    shut (the same head motion and light, re-rendered with opening 0)."""
    folder = tmp_path_factory.mktemp("mouth_sync")
    original = write_demo_clip(folder, 0, seed=0, size=256)
    frames = read_frames(original)
    truth = json.loads(original.with_suffix(".json").read_text(encoding="utf-8"))
    frozen = (frame for frame, _ in animate(base_face(256), np.zeros(truth["num_frames"]),
                                            np.random.default_rng([0, 0, 1])))
    return {
        "original": original,
        "reversed": _write(folder / "reversed.mp4", frames[::-1]),
        "shifted": _write(folder / "shifted.mp4", np.roll(frames, 12, axis=0)),
        "frozen": _write(folder / "frozen.mp4", frozen),
        "truth": original.with_suffix(".json"),
    }


@pytest.fixture(scope="module")
def metric() -> MouthSyncMetric:
    return MouthSyncMetric()


@pytest.fixture(scope="module")
def reference(clips) -> VideoSample:
    """The original clip as a reference, its lip-gap series measured once and cached for every test."""
    return VideoSample(clips["original"])


def test_registered():
    assert METRICS.get("mouth_sync") is MouthSyncMetric


def test_pearson_defined_and_undefined():
    a = np.sin(np.linspace(0, 6, 50))
    assert pearson(a, a) == (pytest.approx(1.0), None)
    assert pearson(a, -a)[0] == pytest.approx(-1.0)
    with_nan = a.copy()
    with_nan[[3, 7]] = np.nan
    assert pearson(with_nan, a)[0] == pytest.approx(1.0)  # frames without a face are left out
    r, reason = pearson(a, np.full(50, 0.2))
    assert np.isnan(r) and "constant" in reason
    r, reason = pearson(np.full(5, np.nan), a)
    assert np.isnan(r) and "frames" in reason


def test_lip_gap_of_ground_truth_follows_opening(clips):
    truth = json.loads(clips["truth"].read_text(encoding="utf-8"))
    gap = lip_gap(np.array(truth["landmarks"]))
    assert np.all(gap >= -0.01) and 0.05 < gap.max() < 1.0  # inter-ocular units
    assert pearson(gap, np.array(truth["mouth_opening"]))[0] > 0.95


def test_identical_videos_score_one(clips, metric, reference):
    assert metric.score(VideoSample(clips["original"]), reference)["mouth_sync"] == pytest.approx(1.0)


def test_reversed_and_shifted_copies_score_low(clips, metric, reference):
    for name in ("reversed", "shifted"):
        r = metric.score(VideoSample(clips[name]), reference)["mouth_sync"]
        assert abs(r) < 0.4, (name, r)


def test_frozen_mouth_is_skipped_or_low(clips, reference, caplog):
    metric = MouthSyncMetric()
    with caplog.at_level(logging.WARNING):
        scores = metric.update(VideoSample(clips["frozen"]), reference)
    if scores:  # dlib's jitter on a shut mouth is not constant: then it must not correlate
        assert abs(scores["mouth_sync"]) < 0.4
    else:
        assert "constant" in caplog.text and metric.compute()["mouth_sync_skipped"] == 1


def test_constant_video_is_skipped_not_a_crash(clips, reference, caplog):
    metric = MouthSyncMetric()
    still = read_frames(clips["original"])[:1]  # an encoded still: only codec noise moves the landmarks
    still_path = _write(clips["original"].parent / "still.mp4", np.repeat(still, 10, axis=0))
    with caplog.at_level(logging.WARNING):
        assert metric.update(VideoSample(still_path), reference) == {}
    assert "constant" in caplog.text and str(still_path) in caplog.text
    result = metric.compute()
    assert np.isnan(result["mouth_sync"]) and result["mouth_sync_skipped"] == 1
    metric.restore({"mouth_sync": 0.5})
    assert metric.compute() == {"mouth_sync": 0.5, "mouth_sync_skipped": 1.0}


def test_reference_series_is_cached(clips):
    metric = MouthSyncMetric()
    reference = VideoSample(clips["original"])
    key = ("mouth_sync_gap", "dlib")
    reference.cache[key] = np.full(read_frames(clips["original"]).shape[0], 0.1)  # exactly constant
    assert metric.update(VideoSample(clips["shifted"]), reference) == {}
    assert metric.skipped_videos == [str(clips["shifted"])]


def test_needs_reference_and_same_size(clips, metric, tmp_path):
    with pytest.raises(DataError, match="reference"):
        metric.score(VideoSample(clips["original"]), None)
    small = _write(tmp_path / "small.mp4", np.zeros((3, 64, 64, 3), np.uint8))
    with pytest.raises(DataError, match="same size"):
        metric.score(VideoSample(small), VideoSample(clips["original"]))


def test_strip_rows_and_columns(clips, tmp_path):
    rows = [("generated", clips["reversed"]), ("control", clips["shifted"]), ("ground truth", clips["original"])]
    out = write_strip(rows, tmp_path / "run" / "strip.png", frames=8)
    image = np.asarray(Image.open(out))
    assert image.shape == (3 * 256, LABEL_WIDTH + 8 * 256, 3)
    generated, reference = read_frames(clips["reversed"]), read_frames(clips["original"])
    control = read_frames(clips["shifted"])
    indices = strip_indices(len(reference), 8)
    assert indices[0] == 0 and indices[-1] == len(reference) - 1 and len(indices) == 8
    for column, index in ((0, indices[0]), (7, indices[-1])):
        left = LABEL_WIDTH + column * 256
        assert np.abs(image[:256, left:left + 256].astype(int) - generated[index]).mean() < 1
        assert np.abs(image[256:512, left:left + 256].astype(int) - control[index]).mean() < 1
        assert np.abs(image[512:, left:left + 256].astype(int) - reference[index]).mean() < 1
    assert not list(out.parent.glob("*.tmp*"))


def test_strip_short_video_and_errors(clips, tmp_path):
    short = _write(tmp_path / "short.mp4", read_frames(clips["original"])[:3])
    image = np.asarray(Image.open(write_strip([("g", short), ("gt", clips["original"])], tmp_path / "s.png", frames=8)))
    assert image.shape == (512, LABEL_WIDTH + 3 * 256, 3)
    assert strip_indices(0, 8) == []
    with pytest.raises(ConfigError, match="s2.png"):
        write_strip([("g", short), ("gt", clips["original"])], tmp_path / "s2.png", frames=0)
    with pytest.raises(ConfigError, match="s3.png"):
        write_strip([], tmp_path / "s3.png")


def test_generated_video_without_a_face_is_skipped(clips, reference, caplog):
    metric = MouthSyncMetric()
    blank = _write(clips["original"].parent / "blank.mp4", np.full((10, 256, 256, 3), 128, np.uint8))
    with caplog.at_level(logging.WARNING):
        assert metric.update(VideoSample(blank), reference) == {}
    assert "0 frames have a face" in caplog.text and metric.compute()["mouth_sync_skipped"] == 1
    with pytest.raises(DataError, match="reference"):
        metric.score(reference, VideoSample(blank))
