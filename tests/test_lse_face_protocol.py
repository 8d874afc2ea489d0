"""The LSE ``face`` protocol: run_pipeline.py's tracking, smoothing and crops, shots, and the metric wiring."""
from pathlib import Path

import numpy as np
import pytest
import torch

from talkingface.evaluation import Evaluator, VideoSample
from talkingface.evaluation.syncnet import SyncNetScorer
from talkingface.evaluation.syncnet.face_protocol import (BackendDetector, TrackScore, find_tracks, reduce_tracks,
                                                          score_face_tracks)
from talkingface.evaluation.syncnet.face_tracks import (FaceTrack, TrackingOptions, box_iou, crop_face,
                                                        crop_parameters, resize_to_face_size, track_shot)
from talkingface.evaluation.syncnet.metric import LSEMetric
from talkingface.evaluation.syncnet.scenes import ShotDetector
from talkingface.face import Box
from talkingface.media import VideoWriter

from helpers import random_syncnet

pytest.importorskip("scenedetect")  # the test extra installs it; the protocol reports itself skipped without it


# ---------------------------------------------------------------- tracking

def literal_track_shot(scene: list[list[dict]], min_track: int, failed: int, min_size: float) -> list[dict]:
    """run_pipeline.py's tracking written as it behaves: faces are removed from the frame lists while those
    lists are being iterated (so the face after a taken one is not looked at), and leaving a frame's loop
    when the gap is too long moves on to the next frame."""
    tracks = []
    while True:
        track: list[dict] = []
        for faces in scene:
            for face in faces:
                if not track:
                    track.append(face)
                    faces.remove(face)
                elif face["frame"] - track[-1]["frame"] <= failed:
                    if box_iou(face["bbox"], track[-1]["bbox"]) > 0.5:
                        track.append(face)
                        faces.remove(face)
                        continue
                else:
                    break
        if not track:
            return tracks
        if len(track) > min_track:
            numbers = [f["frame"] for f in track]
            every = list(range(numbers[0], numbers[-1] + 1))
            boxes = np.array([[np.interp(n, numbers, [f["bbox"][j] for f in track]) for j in range(4)]
                              for n in every])
            if max((boxes[:, 2] - boxes[:, 0]).mean(), (boxes[:, 3] - boxes[:, 1]).mean()) > min_size:
                tracks.append({"frame": np.array(every), "bbox": boxes})


def random_scene(rng: np.random.Generator, frames: int) -> list[np.ndarray]:
    """Two drifting faces with missed detections, duplicates and false positives."""
    centres = np.array([[80.0, 90.0], [220.0, 100.0]])
    scene = []
    for _ in range(frames):
        centres += rng.normal(0, 2, centres.shape)
        boxes = []
        for cx, cy in centres:
            if rng.random() < 0.8:
                half = 60 + rng.normal(0, 2)
                boxes.append([cx - half, cy - half, cx + half, cy + half, 0.99])
                if rng.random() < 0.1:  # a near-duplicate right after it
                    boxes.append([cx - half + 3, cy - half, cx + half + 3, cy + half, 0.95])
        if rng.random() < 0.1:
            x, y = rng.uniform(0, 300, 2)
            boxes.append([x, y, x + rng.uniform(10, 150), y + rng.uniform(10, 150), 0.91])
        order = rng.permutation(len(boxes))
        scene.append(np.array([boxes[i] for i in order], dtype=np.float32).reshape(-1, 5))
    return scene


@pytest.mark.parametrize("seed", range(6))
def test_tracking_equals_the_reference_behaviour(seed):
    rng = np.random.default_rng(seed)
    scene = random_scene(rng, 160)
    options = TrackingOptions(min_track=40, num_failed_det=int(rng.integers(2, 26)), min_face_size=100)
    got = track_shot(scene, 500, options)
    literal = literal_track_shot([[{"frame": 500 + i, "bbox": list(map(float, d[:4]))} for d in dets]
                                  for i, dets in enumerate(scene)], 40, options.num_failed_det, 100)
    assert len(got) == len(literal) >= 1
    for ours, theirs in zip(got, literal):
        np.testing.assert_array_equal(ours.frames, theirs["frame"])
        np.testing.assert_allclose(ours.boxes, theirs["bbox"], rtol=1e-6)


def test_tracking_rules():
    box = np.array([[0, 0, 120, 120, 1.0]], np.float32)
    small = np.array([[0, 0, 90, 90, 1.0]], np.float32)
    none = np.zeros((0, 5), np.float32)
    options = TrackingOptions(min_track=10)
    assert track_shot([box] * 10, 0, options) == []  # needs more than min_track detections
    assert len(track_shot([box] * 11, 0, options)) == 1
    assert track_shot([small] * 50, 0, options) == []  # mean side must exceed min_face_size
    # a gap of up to num_failed_det frames is bridged by interpolation; a longer one ends the track
    bridged = track_shot([box] * 6 + [none] * 24 + [box + [10, 0, 10, 0, 0]] * 6, 7, options)
    assert len(bridged) == 1 and bridged[0].start == 7 and bridged[0].end == 42
    np.testing.assert_allclose(bridged[0].boxes[[5, 18, 30], 0], [0, 10 * 13 / 25, 10])
    assert track_shot([box] * 6 + [none] * 26 + [box] * 6, 0, options) == []


def test_medfilt_smoothing_and_its_zero_padded_ends():
    frames = np.arange(20)
    side = np.linspace(200, 100, 20)  # shrinking face: half-size 100 -> 50
    boxes = np.stack([np.full(20, 10.0), np.full(20, 20.0), 10 + side, 20 + side], axis=1)
    params = crop_parameters(FaceTrack(frames, boxes), TrackingOptions())
    s = side / 2
    assert params[10, 0] == pytest.approx(s[10])  # interior: the median of 13 monotone values is the middle one
    assert params[0, 0] == pytest.approx(s[6])  # zero padding: the first frame takes the 7th value
    centre_x = 10 + s
    assert params[0, 1] == pytest.approx(centre_x[6]) and params[19, 1] == pytest.approx(centre_x[19])
    assert params[19, 0] == pytest.approx(s[19])  # growing from zero at the end: the smallest stays


def test_crop_is_the_shifted_padded_square_of_the_reference():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    options = TrackingOptions()
    size, cx, cy = 20.0, 60.3, 40.7
    crop = crop_face(frame, size, cx, cy, options)
    pad = int(size * 1.8)
    top, left = int(cy + pad - size) - pad, int(cx + pad - size * 1.4) - pad
    assert crop.shape == (int(cy + pad + 1.8 * size) - int(cy + pad - size),
                          int(cx + pad + 1.4 * size) - int(cx + pad - 1.4 * size), 3)
    for r, c in [(0, 0), (10, 20), (crop.shape[0] - 1, crop.shape[1] - 1)]:
        np.testing.assert_array_equal(crop[r, c], frame[top + r, left + c])
    corner = crop_face(frame, 30.0, 5.0, 5.0, options)  # leaves the frame: constant 110 there
    assert (corner[0, 0] == 110).all() and corner.shape[0] > 0
    assert resize_to_face_size(crop).shape == (224, 224, 3)


# ---------------------------------------------------------------- shots and the whole protocol

def two_shot_video(path: Path, frames: int = 60, cut: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """A smooth picture that changes completely at ``cut``, with 16 kHz audio; returns frames and int16 audio."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:96, 0:96]
    first = np.stack([xx * 2, yy * 2, np.full_like(xx, 60)], -1).astype(np.uint8)
    second = np.stack([255 - yy * 2, np.full_like(xx, 200), xx], -1).astype(np.uint8)
    video = np.stack([(first if t < cut else second) for t in range(frames)])
    video[:, 40:44, 40:56] = (np.arange(frames)[:, None, None, None] * 4) % 256  # a moving "mouth"
    audio = rng.uniform(-0.3, 0.3, frames * 640)
    with VideoWriter(path, 25, audio=audio, crf=0, preset="ultrafast") as writer:
        for frame in video:
            writer.write(frame)
    return video, audio


class FixedFace:
    """A detector that sees one face at the same place in every frame."""

    def __init__(self, box=(20.0, 16.0, 76.0, 72.0)):
        self.box = np.array([[*box, 1.0]], np.float32)

    def detect_batch(self, frames):
        return [self.box.copy() for _ in frames]


def test_shot_detector_finds_the_cut(tmp_path):
    video, _ = two_shot_video(tmp_path / "v.mp4")
    shots = ShotDetector()
    for frame in video:
        shots.add(frame)
    assert shots.shots() == [(0, 30), (30, 60)]
    still = ShotDetector()
    for frame in video[:20]:
        still.add(frame)
    assert still.shots() == [(0, 20)]


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> SyncNetScorer:
    return SyncNetScorer(random_syncnet(tmp_path_factory.mktemp("sn") / "syncnet_v2.model"), device="cpu")


def test_face_protocol_scores_each_track_on_its_crops_and_audio(scorer, tmp_path):
    path = tmp_path / "v.mp4"
    two_shot_video(path)
    options = TrackingOptions(min_track=20, min_face_size=40)
    tracks = find_tracks(path, FixedFace(), options)
    assert [(t.start, t.end) for t in tracks] == [(0, 29), (30, 59)]  # the cut splits the face into two tracks
    scores = score_face_tracks(path, scorer, FixedFace(), options)
    decoded = VideoSample(path)
    audio = np.clip(np.rint(decoded.audio.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)
    for track, score in zip(tracks, scores):
        size, cx, cy = 28.0, 48.0, 44.0  # the fixed box: half-side 28 around (48, 44)
        crops = np.stack([resize_to_face_size(crop_face(decoded.frames[t], size, cx, cy, options))
                          for t in range(track.start, track.end + 1)])
        expected = scorer.score_frames(crops, audio[track.start * 640:(track.end + 1) * 640])
        assert (score.start, score.end, score.offset) == (track.start, track.end, expected["offset"])
        assert score.lse_d == pytest.approx(expected["lse_d"], rel=1e-6)
        assert score.lse_c == pytest.approx(expected["lse_c"], rel=1e-5, abs=1e-6)


def test_track_reductions():
    tracks = [TrackScore(0, 99, 7.0, 5.0, 1), TrackScore(100, 399, 9.0, 2.0, -2), TrackScore(400, 449, 8.0, 6.0, 0)]
    assert reduce_tracks(tracks, "mean") == {"lse_d": 8.0, "lse_c": pytest.approx(13 / 3), "sync_offset": -2.0,
                                             "lse_tracks": 3.0}
    assert reduce_tracks(tracks, "longest")["lse_d"] == 9.0 and reduce_tracks(tracks, "longest")["lse_c"] == 2.0
    assert reduce_tracks(tracks, "best") == {"lse_d": 7.0, "lse_c": 6.0, "sync_offset": -2.0, "lse_tracks": 3.0}
    with pytest.raises(ValueError):
        reduce_tracks(tracks, "median")


def test_backend_detector_adapts_face_backends():
    class TwoFaces:
        def detect(self, frame):
            return [Box(1, 2, 30, 40), Box(50, 50, 90, 95)]

    out = BackendDetector(TwoFaces()).detect_batch([np.zeros((100, 100, 3), np.uint8)] * 2)
    assert len(out) == 2 and out[0].shape == (2, 5)
    np.testing.assert_array_equal(out[1][1], [50, 50, 90, 95, 1])


def test_metric_face_protocol_and_videos_without_a_track(scorer, tmp_path, monkeypatch):
    import talkingface.evaluation.syncnet.metric as lse_module
    from talkingface.weights import KnownWeights, sha256_of

    path = tmp_path / "v.mp4"
    two_shot_video(path)
    weights = random_syncnet(tmp_path / "syncnet_v2.model")
    monkeypatch.setattr(lse_module, "SYNCNET_V2", KnownWeights("syncnet_v2.model", "test", "lse", sha256_of(weights)))
    config = {"device": "cpu", "evaluate": {"syncnet_weights": str(weights), "lse_protocol": "face",
                                            "lse_min_track": 20, "lse_min_face_size": 40,
                                            "lse_track_reduction": "longest"}}
    metric = LSEMetric(config)
    metric._detector = FixedFace()
    row = metric.update(VideoSample(path), None)
    assert row["lse_tracks"] == 2.0 and np.isfinite(row["lse_d"])
    strict = LSEMetric({**config, "evaluate": {**config["evaluate"], "lse_min_track": 100}})
    strict._detector = FixedFace()
    assert np.isnan(strict.update(VideoSample(path), None)["lse_d"])
    strict.restore(row)
    summary = strict.compute()
    assert summary["lse_d"] == pytest.approx(row["lse_d"]) and summary["lse_videos_without_track"] == 1.0


def test_metric_options_are_checked_and_scenedetect_is_required(tmp_path, monkeypatch):
    import talkingface.evaluation.syncnet.metric as lse_module
    from talkingface.errors import ConfigError

    weights = random_syncnet(tmp_path / "syncnet_v2.model")
    with pytest.raises(ConfigError, match="lse_protocol"):
        LSEMetric({"evaluate": {"lse_protocol": "s3fd"}})
    with pytest.raises(ConfigError, match="lse_track_reduction"):
        LSEMetric({"evaluate": {"lse_track_reduction": "max"}})
    monkeypatch.setattr(lse_module, "scenedetect_available", lambda: "no scenedetect here")
    config = {"evaluate": {"syncnet_weights": str(weights), "lse_protocol": "face"}}
    assert LSEMetric(config).unavailable() == "no scenedetect here"
    assert Evaluator(["lse"], config, progress=False).skipped == {"lse": "skipped (no scenedetect here)"}
    config["evaluate"]["lse_protocol"] = "lrs"
    assert LSEMetric(config).unavailable() is None


def test_detector_is_s3fd_when_its_weights_are_present_else_dlib(tmp_path, monkeypatch):
    import talkingface.face.s3fd as s3fd_package
    from talkingface.errors import ConfigError
    from talkingface.evaluation.syncnet.face_protocol import S3FDProtocolDetector
    from talkingface.face.s3fd import S3FD
    from talkingface.weights import KnownWeights, sha256_of

    absent = {"evaluate": {"s3fd_weights": str(tmp_path / "sfd_face.pth")}, "device": "cpu"}
    chosen = LSEMetric(absent).detector
    assert isinstance(chosen, BackendDetector) and type(chosen.backend).__name__ == "DlibBackend"
    with pytest.raises(ConfigError, match="sfd_face.pth not found"):
        LSEMetric({**absent, "evaluate": {**absent["evaluate"], "lse_detector": "s3fd"}}).detector
    torch.manual_seed(0)
    torch.save(S3FD().state_dict(), tmp_path / "sfd_face.pth")
    monkeypatch.setattr(s3fd_package, "SFD_FACE", KnownWeights("sfd_face.pth", "test", "lse",
                                                              sha256_of(tmp_path / "sfd_face.pth")))
    chosen = LSEMetric({**absent, "evaluate": {**absent["evaluate"], "lse_facedet_scale": 0.5}}).detector
    assert isinstance(chosen, S3FDProtocolDetector) and chosen.scales == (0.5,) and chosen.conf_threshold == 0.9
    found = chosen.detect_batch([np.zeros((64, 64, 3), np.uint8)] * 2)
    assert len(found) == 2 and all(f.shape[1] == 5 for f in found)
