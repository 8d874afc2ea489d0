"""Streaming frames to metrics: pairing, strides, the face region, and chunk-independent results."""
from pathlib import Path

import numpy as np
import pytest

from talkingface.errors import ConfigError, DataError
from talkingface.evaluation import VideoSample, psnr, ssim
from talkingface.evaluation.frames import FaceRegion, frame_region, paired_chunks, video_chunks
from talkingface.evaluation.metrics import PSNRMetric
from talkingface.evaluation.ssim import SSIMMetric
from talkingface.face import FaceTrack, crop_and_resize, square_box

RNG = np.random.default_rng(0)


def sample(frames: np.ndarray, name: str = "in-memory.mp4") -> VideoSample:
    video = VideoSample(Path(name))
    video.__dict__["frames"] = frames
    return video


def test_pairs_stop_at_the_shorter_video_and_follow_the_stride():
    a = RNG.integers(0, 256, (70, 8, 8, 3), dtype=np.uint8)
    b = RNG.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    chunks = list(paired_chunks(sample(a), sample(b), size=32))
    assert [len(x) for x, _ in chunks] == [32, 18]
    np.testing.assert_array_equal(np.concatenate([y for _, y in chunks]), b)
    strided = np.concatenate([x for x, _ in paired_chunks(sample(a), sample(b), stride=3)])
    np.testing.assert_array_equal(strided, a[:50:3])
    np.testing.assert_array_equal(np.concatenate(list(video_chunks(sample(a), 4))), a[::4])
    with pytest.raises(DataError, match="same size"):
        list(paired_chunks(sample(a), sample(a[:, :4])))


def test_metrics_do_not_depend_on_chunk_boundaries():
    a = RNG.integers(0, 256, (70, 16, 16, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + RNG.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert PSNRMetric().score(sample(a), sample(b))["psnr"] == pytest.approx(psnr(a, b), rel=1e-12)
    config = {"evaluate": {"ssim_preset": "talklip"}}
    assert SSIMMetric(config).score(sample(a), sample(b))["ssim"] == pytest.approx(ssim(a, b, "talklip"), rel=1e-12)


def test_face_region_crops_both_videos_at_the_reference_face():
    frames = 6
    a = RNG.integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8)
    b = RNG.integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8)
    landmarks = np.tile(RNG.uniform(20, 40, (1, 68, 2)), (frames, 1, 1))
    valid = np.array([True, True, False, True, True, True])  # no face in the reference's frame 2
    reference = sample(b, "ref.mp4")
    region = frame_region({"evaluate": {"region": "face", "face_crop_scale": 1.5, "face_crop_size": 32}})
    assert region == FaceRegion("dlib", 1.5, 32)
    reference.cache[("face_track", "dlib")] = FaceTrack.from_landmarks(landmarks, valid)
    pairs = list(paired_chunks(sample(a), reference, region=region))
    got_a, got_b = np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])
    assert got_a.shape == (5, 32, 32, 3)
    box = square_box(reference.cache[("face_track", "dlib")].landmarks[3], 1.5)  # float32, as tracks store them
    np.testing.assert_array_equal(got_a[2], crop_and_resize(a[3], box, 32, fill=0))
    np.testing.assert_array_equal(got_b[4], crop_and_resize(b[5], box, 32, fill=0))
    assert frame_region({"evaluate": {"region": "full"}}) is None and frame_region(None) is None
    with pytest.raises(ConfigError, match="evaluate.region"):
        frame_region({"evaluate": {"region": "mouth"}})


def test_face_region_tracks_the_reference_once(monkeypatch):
    import talkingface.evaluation.frames as frames_module

    calls = []

    def fake_track(backend, frames, **options):
        calls.append(len(list(frames)))
        return FaceTrack.from_landmarks(np.full((3, 68, 2), 10.0) + np.arange(68)[None, :, None] / 4,
                                        np.ones(3, bool))

    monkeypatch.setattr(frames_module, "track_frames", fake_track)
    monkeypatch.setattr(frames_module, "build_face_backend", lambda name, config: name)
    video = RNG.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    reference = sample(video, "ref.mp4")
    region = FaceRegion(size=16)
    for _ in range(2):
        assert sum(len(x) for x, _ in paired_chunks(sample(video), reference, region=region)) == 3
    assert calls == [3]
