from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from talkingface.audio import mfcc
from talkingface.config import Config
from talkingface.errors import AudioError, CheckpointError, DataError
from talkingface.evaluation import Evaluator, VideoSample
from talkingface.evaluation.syncnet import SyncNet, SyncNetScorer
from talkingface.evaluation.syncnet.distance import RunningDistances, shifted_distances, sync_scores
from talkingface.evaluation.syncnet.inputs import audio_to_int16_scale, frames_to_bgr224, window_count
from talkingface.evaluation.syncnet.metric import LSEMetric
from talkingface.media import VideoWriter
from talkingface.registry import METRICS

from helpers import random_syncnet

FRAMES = 8  # 3 scored windows: min_length 8 -> lastframe 3


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return random_syncnet(tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model")


@pytest.fixture(scope="module")
def scorer(weights) -> SyncNetScorer:
    return SyncNetScorer(weights, device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (FRAMES, 48, 40, 3), dtype=np.uint8)
    audio = rng.integers(-8000, 8000, FRAMES * 640 + 100).astype(np.int16)
    return frames, audio


def test_network_matches_released_layout():
    net = SyncNet()
    assert sum(p.numel() for p in net.parameters()) == 13_631_616
    keys = list(net.state_dict())
    assert {k.split(".")[0] for k in keys} == {"netcnnaud", "netfcaud", "netcnnlip", "netfclip"}
    assert "netcnnaud.0.weight" in keys and "netcnnaud.1.running_mean" in keys
    assert "netcnnaud.18.weight" in keys and "netcnnlip.18.weight" in keys
    assert tuple(net.state_dict()["netfcaud.3.weight"].shape) == (1024, 512)
    assert len([k for k in keys if not k.endswith("num_batches_tracked")]) == 88


def test_forward_shapes():
    net = SyncNet().eval()
    with torch.no_grad():
        assert net.forward_aud(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
        assert net.forward_lip(torch.randn(1, 3, 5, 224, 224)).shape == (1, 1024)


def test_weights_round_trip_strictly(weights, scorer):
    saved = torch.load(weights, weights_only=True)
    for key, value in scorer.net.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert not scorer.net.training


def test_release_without_counters_and_wrapped_state_dict_load(weights, tmp_path):
    saved = torch.load(weights, weights_only=True)
    old = {k: v for k, v in saved.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.model")
    torch.save({"state_dict": saved}, tmp_path / "wrapped.pth")
    for name in ("old.model", "wrapped.pth"):
        loaded = SyncNetScorer(tmp_path / name, device="cpu").net.state_dict()
        assert torch.equal(loaded["netcnnlip.0.weight"], saved["netcnnlip.0.weight"])


def test_missing_key_is_named(weights, tmp_path):
    saved = torch.load(weights, weights_only=True)
    del saved["netfclip.3.weight"]
    torch.save(saved, tmp_path / "broken.model")
    with pytest.raises(CheckpointError, match=r"netfclip\.3\.weight"):
        SyncNetScorer(tmp_path / "broken.model", device="cpu")


def naive_lse(video: np.ndarray, audio: np.ndarray, vshift: int = 15) -> tuple[float, float, int]:
    """calc_pdist + evaluate of the reference, with loops."""
    n, dim = video.shape
    padded = np.zeros((n + 2 * vshift, dim))
    padded[vshift:vshift + n] = audio
    dists = np.zeros((n, 2 * vshift + 1))
    for i in range(n):
        for k in range(2 * vshift + 1):
            diff = video[i] - padded[i + k] + 1e-6
            dists[i, k] = np.sqrt(np.sum(diff * diff))
    mdist = dists.mean(axis=0)
    best = int(np.argmin(mdist))
    return mdist[best], np.sort(mdist)[vshift] - mdist[best], vshift - best


@pytest.mark.parametrize("n", [4, 40])
def test_lse_arithmetic_matches_naive_loops(n):
    rng = np.random.default_rng(n)
    video, audio = rng.normal(size=(n, 6)), rng.normal(size=(n, 6))
    dists = shifted_distances(torch.from_numpy(video), torch.from_numpy(audio))
    assert dists.shape == (n, 31)
    # window 0 at shift k = 0 meets the zero padding: the distance is the norm of the video embedding
    assert dists[0, 0].item() == pytest.approx(np.linalg.norm(video[0] + 1e-6), rel=1e-12)
    assert dists[n - 1, 30].item() == pytest.approx(np.linalg.norm(video[n - 1] + 1e-6), rel=1e-12)
    scores = sync_scores(dists)
    lse_d, lse_c, offset = naive_lse(video, audio)
    assert scores["lse_d"] == pytest.approx(lse_d, rel=1e-12)
    assert scores["lse_c"] == pytest.approx(lse_c, rel=1e-12, abs=1e-12)
    assert scores["offset"] == offset


@pytest.mark.parametrize("shift", [3, -5])
def test_offset_sign_follows_the_reference(shift):
    rng = np.random.default_rng(1)
    video = rng.normal(size=(60, 8))
    audio = np.roll(video, -shift, axis=0)  # audio[m] = video[m + shift]
    scores = sync_scores(shifted_distances(torch.from_numpy(video), torch.from_numpy(audio)))
    assert scores["offset"] == shift
    assert naive_lse(video, audio)[2] == shift
    assert scores["lse_c"] > 1.0


@pytest.mark.numerics
def test_embeddings_follow_the_reference_windows(scorer, clip):
    frames, audio = clip
    cepstra = torch.from_numpy(mfcc(audio.astype(np.float64)).T).float()
    video, sound = scorer.embed(frames, cepstra, 3)
    bgr = torch.from_numpy(frames[..., [2, 1, 0]].astype(np.float32)).permute(0, 3, 1, 2)
    bgr = F.interpolate(bgr, size=(224, 224), mode="bilinear", align_corners=False).round().clamp(0, 255)
    with torch.no_grad():
        for v in range(3):
            lip = scorer.net.forward_lip(bgr[v:v + 5].permute(1, 0, 2, 3).unsqueeze(0))
            aud = scorer.net.forward_aud(cepstra[:, 4 * v:4 * v + 20][None, None])
            torch.testing.assert_close(video[v], lip[0], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(sound[v], aud[0], rtol=1e-4, atol=1e-4)
    swapped, _ = scorer.embed(frames[..., ::-1], cepstra, 3)
    assert (swapped - video).abs().max() > 1e-3


def test_frames_are_bgr_and_resized_to_224():
    frames = np.zeros((2, 30, 50, 3), np.uint8)
    frames[..., 0] = 200  # red
    out = frames_to_bgr224(frames, torch.device("cpu"))
    assert out.shape == (2, 3, 224, 224)
    assert out[:, 2].eq(200).all() and out[:, :2].eq(0).all()
    native = np.random.default_rng(2).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    blue = torch.from_numpy(native[0, ..., 2]).float()
    assert torch.equal(frames_to_bgr224(native, torch.device("cpu"))[0, 0], blue)


def test_int16_and_float_audio_give_identical_scores(scorer, clip):
    frames, audio = clip
    as_int = scorer.score_frames(frames, audio)
    as_float = scorer.score_frames(frames, audio.astype(np.float32) / 32768)
    assert as_int == as_float
    assert set(as_int) == {"lse_d", "lse_c", "offset"} and isinstance(as_int["offset"], int)
    assert np.isfinite(as_int["lse_d"]) and as_int["lse_c"] >= 0


def test_float_audio_is_scaled_rounded_and_clipped():
    out = audio_to_int16_scale(np.array([0.5, -1.0, 1.2, 1e-5], np.float32))
    np.testing.assert_array_equal(out, [16384, -32768, 32767, 0])
    with pytest.raises(AudioError):
        audio_to_int16_scale(np.array([1000.0, -3.0]))


@pytest.mark.numerics
def test_batch_size_does_not_change_scores(weights, scorer, clip):
    frames, audio = clip
    other = SyncNetScorer(weights, device="cpu", batch_size=20)
    a, b = scorer.score_frames(frames, audio), other.score_frames(frames, audio)
    assert a["offset"] == b["offset"]
    assert a["lse_d"] == pytest.approx(b["lse_d"], rel=1e-5)


def test_too_short_input_raises(scorer, clip):
    frames, audio = clip
    assert window_count(6, 6 * 640) == 1
    assert window_count(100, 7 * 640 + 639) == 2
    with pytest.raises(DataError, match="at least 6 frames"):
        window_count(5, 10_000)
    with pytest.raises(DataError):
        scorer.score_frames(frames, audio[:5 * 640])
    with pytest.raises(DataError):
        scorer.score_frames(frames[:2, :, :, 0], audio)


def test_metric_is_skipped_without_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert METRICS.get("lse_c") is LSEMetric and METRICS.get("syncnet") is LSEMetric
    assert LSEMetric().unavailable() == "syncnet_v2.model not found at checkpoints/syncnet_v2.model; see " \
                                         "checkpoints/README.md"
    config = {"evaluate": {"syncnet_weights": str(tmp_path / "absent.model")}}
    reason = f"syncnet_v2.model not found at {tmp_path / 'absent.model'}; see checkpoints/README.md"
    assert LSEMetric(config).unavailable() == reason
    assert LSEMetric(Config({"device": "auto", "evaluate": {"metrics": ["lse"]}})).weights == Path(
        "checkpoints/syncnet_v2.model")
    assert Evaluator(["lse"], config, progress=False).skipped == {"lse": f"skipped ({reason})"}


def test_metric_scores_a_video(weights, tmp_path, monkeypatch):
    import talkingface.evaluation.syncnet.metric as lse_module
    from talkingface.weights import KnownWeights, sha256_of

    # the random test network stands in for the release, so its own hash is the known one
    monkeypatch.setattr(lse_module, "SYNCNET_V2", KnownWeights("syncnet_v2.model", "test", "lse", sha256_of(weights)))
    rng = np.random.default_rng(3)
    path = tmp_path / "talk.mp4"
    audio = rng.uniform(-0.3, 0.3, FRAMES * 640 + 400)
    with VideoWriter(path, 25, audio=audio, crf=0, preset="ultrafast") as writer:
        for frame in rng.integers(0, 256, (FRAMES, 32, 32, 3), dtype=np.uint8):
            writer.write(frame)
    metric = LSEMetric({"evaluate": {"syncnet_weights": str(weights)}, "device": "cpu"})
    assert metric.unavailable() is None and not metric.needs_reference
    first = metric.update(VideoSample(path), None)
    metric.update(VideoSample(path), None)
    assert metric.scorer.device == torch.device("cpu")
    assert set(first) == {"lse_d", "lse_c", "sync_offset"}
    assert metric.compute()["lse_d"] == pytest.approx(first["lse_d"])


def test_metric_refuses_a_file_that_is_not_the_release(weights, tmp_path):
    from talkingface.errors import CheckpointError

    metric = LSEMetric({"evaluate": {"syncnet_weights": str(weights)}})
    assert metric.unavailable() is None
    with pytest.raises(CheckpointError, match="is not the released syncnet_v2.model: SHA-256 .* does not match "
                                              "961e8696…5442"):
        metric.scorer


# ---------------------------------------------------------------- streaming

@pytest.mark.numerics
@pytest.mark.parametrize("n, batches", [(3, [3]), (40, [7, 1, 20, 12]), (100, [64, 36])])
def test_running_distances_equal_the_whole_clip_computation(n, batches):
    rng = np.random.default_rng(n)
    video, audio = torch.from_numpy(rng.normal(size=(n, 6))), torch.from_numpy(rng.normal(size=(n, 6)))
    running = RunningDistances()
    start = 0
    for size in batches:
        running.add(video[start:start + size], audio[start:start + size])
        start += size
    assert start == n and running.count <= n
    expected = shifted_distances(video.float(), audio.float()).double().mean(dim=0)
    torch.testing.assert_close(running.means(), expected, rtol=1e-6, atol=1e-6)
    assert running.count == n and len(running._audio) <= 2 * 15 + max(batches)


@pytest.mark.numerics
def test_stream_in_uneven_chunks_equals_one_call(scorer, clip):
    frames, audio = clip
    stream = scorer.stream(audio)
    for part in (frames[:1], frames[1:1], frames[1:6], frames[6:]):
        stream.add(part)
    whole = scorer.score_frames(frames, audio)
    streamed = stream.finish()
    assert streamed["offset"] == whole["offset"]
    assert streamed["lse_d"] == pytest.approx(whole["lse_d"], rel=1e-6)
    assert streamed["lse_c"] == pytest.approx(whole["lse_c"], rel=1e-5, abs=1e-6)


def test_stream_holds_at_most_a_batch_of_frames(weights):
    scorer = SyncNetScorer(weights, device="cpu", batch_size=3)
    rng = np.random.default_rng(5)
    audio = rng.integers(-8000, 8000, 40 * 640).astype(np.int16)
    stream = scorer.stream(audio)
    for frame in rng.integers(0, 256, (40, 24, 24, 3), dtype=np.uint8):
        stream.add(frame[None])
        assert len(stream._buffer) <= scorer.batch_size + 5
    assert stream.next_window == 33 and stream.finish()["offset"] in range(-15, 16)


@pytest.mark.numerics
def test_inference_form_equals_the_release_layout(scorer):
    rng = np.random.default_rng(4)
    lips = torch.from_numpy(rng.uniform(0, 255, (2, 3, 5, 224, 224)).astype(np.float32))
    sound = torch.from_numpy(rng.normal(0, 10, (2, 1, 13, 20)).astype(np.float32))
    with torch.no_grad():
        expected_lip, expected_aud = scorer.net.forward_lip(lips), scorer.net.forward_aud(sound)
        got_lip = scorer.inference.forward_lip(lips.reshape(2, 15, 224, 224))
        got_aud = scorer.inference.forward_aud(sound)
    torch.testing.assert_close(got_lip, expected_lip, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_aud, expected_aud, rtol=1e-4, atol=1e-4)
    # frame order inside the 15 channels matters: channel c of frame t sits at c * 5 + t
    swapped = lips.transpose(1, 2).reshape(2, 15, 224, 224)
    with torch.no_grad():
        assert (scorer.inference.forward_lip(swapped) - expected_lip).abs().max() > 1e-3


def test_score_video_streams_the_file_like_score_frames(scorer, tmp_path):
    rng = np.random.default_rng(6)
    frames = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, 25, audio=rng.uniform(-0.3, 0.3, 30 * 640), crf=0, preset="ultrafast") as writer:
        for frame in frames:
            writer.write(frame)
    decoded = VideoSample(path)
    expected = scorer.score_frames(decoded.frames, decoded.audio)
    got = scorer.score_video(path)
    assert got["offset"] == expected["offset"] and got["lse_d"] == pytest.approx(expected["lse_d"], rel=1e-6)
