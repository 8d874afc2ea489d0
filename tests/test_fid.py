import math
from pathlib import Path

import numpy as np
import pytest
import torch

from talkingface.config import Config
from talkingface.errors import CheckpointError, ConfigError, DataError
from talkingface.evaluation import Evaluator
from talkingface.evaluation.fid import (FIDInceptionV3, FIDMetric, InceptionFeatures, frechet_distance,
                                        frechet_distance_from_stats, load_fid_inception)
from talkingface.evaluation.fid import frechet as frechet_module
from talkingface.evaluation.fid import metric as fid_metric_module
from talkingface.evaluation.fid.inception import FIDInceptionE_1, FIDInceptionE_2, tf_avg_pool
from talkingface.evaluation.metric import VideoSample
from talkingface.weights import KnownWeights, sha256_of

from numerics import EPS32


def test_frechet_matches_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert expected == pytest.approx(1 + 6.25 + 4 + 1)
    value = frechet_distance_from_stats(mu1, np.diag(var1), mu2, np.diag(var2))
    assert value == pytest.approx(expected, rel=1e-9)


def test_frechet_of_features_uses_unbiased_covariance_and_is_symmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 6))
    b = rng.normal(loc=0.5, scale=2.0, size=(40, 6)) @ rng.normal(size=(6, 6))
    by_hand = frechet_distance_from_stats(a.mean(0), np.cov(a.T, ddof=1), b.mean(0), np.cov(b.T, ddof=1))
    assert frechet_distance(a, b) == pytest.approx(by_hand, rel=1e-12)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-6)
    assert frechet_distance(a, b) > 1.0
    assert abs(frechet_distance(a, a)) < 1e-8
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(a[:1], b)


def test_singular_covariances_stay_finite_and_nonfinite_roots_retry_with_eps(monkeypatch):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 40)), rng.normal(size=(6, 40))  # N < D: rank-deficient covariances
    value = frechet_distance(a, b)
    assert math.isfinite(value) and value > 0

    real_sqrtm, calls = frechet_module.linalg.sqrtm, []

    def nan_first(matrix):
        calls.append(matrix)
        return np.full_like(matrix, np.nan) if len(calls) == 1 else real_sqrtm(matrix)

    monkeypatch.setattr(frechet_module.linalg, "sqrtm", nan_first)
    sigma = np.cov(a, rowvar=False)
    retried = frechet_distance_from_stats(a.mean(0), sigma, a.mean(0), sigma, eps=1e-3)
    assert len(calls) == 2 and math.isfinite(retried)
    shifted = sigma + 1e-3 * np.eye(40)
    np.testing.assert_allclose(calls[1], shifted @ shifted)


def test_large_imaginary_part_of_the_root_raises():
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance_from_stats(np.zeros(2), np.eye(2), np.zeros(2), np.diag([-4.0, 1.0]))
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance_from_stats(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_inception_layout_matches_the_pytorch_fid_checkpoint():
    network = FIDInceptionV3()
    state = network.state_dict()
    # torchvision inception_v3 without AuxLogits has 23,834,568 parameters, 2,049,000 of them in fc.
    assert sum(p.numel() for p in network.parameters()) == 21_785_568
    assert len(sorted(state)) == 94 * 6  # 94 BasicConv2d: conv.weight + 5 BatchNorm entries
    shapes = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_1a_3x3.bn.running_mean": (32,),
        "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
        "Mixed_5b.branch1x1.conv.weight": (64, 192, 1, 1),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7b.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
        "Mixed_7c.branch_pool.bn.num_batches_tracked": (),
    }
    assert {key: tuple(state[key].shape) for key in shapes} == shapes
    assert network.Conv2d_1a_3x3.bn.eps == 0.001 and network.Conv2d_1a_3x3.conv.bias is None


def test_fid_blocks_keep_the_tf_pooling_quirks():
    x = torch.arange(2 * 4 * 5 * 5, dtype=torch.float32).reshape(2, 4, 5, 5)
    ones = torch.ones(1, 1, 5, 5)
    assert torch.equal(tf_avg_pool(ones), ones)  # count_include_pad=True would give 4/9 in the corners
    assert torch.equal(FIDInceptionE_2(4).pool(x), torch.nn.functional.max_pool2d(x, 3, 1, 1))
    assert torch.equal(FIDInceptionE_1(4).pool(x), tf_avg_pool(x))


@pytest.fixture(scope="module")
def released_layout_weights(tmp_path_factory) -> Path:
    """A seeded random network saved as the release is laid out: with the 1008-class ``fc``.

    He-initialised convolutions keep the signal alive through 94 layers, so different pictures
    give clearly different features (the default init collapses them to one vector).
    """
    torch.manual_seed(0)
    network = FIDInceptionV3()
    for module in network.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    state = network.state_dict()
    state["fc.weight"], state["fc.bias"] = torch.randn(1008, 2048), torch.zeros(1008)
    path = tmp_path_factory.mktemp("fid") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    return path


def test_strict_load_names_missing_and_unexpected_keys(released_layout_weights: Path, tmp_path: Path):
    state = torch.load(released_layout_weights, weights_only=True)
    del state["Mixed_7c.branch_pool.conv.weight"]
    state["Mixed_7d.conv.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "broken.pth")
    missing = r"missing keys \(1\): Mixed_7c.branch_pool.conv.weight"
    with pytest.raises(CheckpointError, match=missing) as error:
        InceptionFeatures(tmp_path / "broken.pth", device="cpu")
    assert "Mixed_7d.conv.weight" in str(error.value) and "broken.pth" in str(error.value)

    # a file saved before BatchNorm tracked num_batches_tracked still loads; only fc.* is dropped
    old_format = {k: v for k, v in torch.load(released_layout_weights, weights_only=True).items()
                  if not k.endswith("num_batches_tracked")}
    torch.save(old_format, tmp_path / "old.pth")
    assert load_fid_inception(tmp_path / "old.pth").Mixed_7c.branch_pool.bn.num_batches_tracked == 0


@pytest.mark.numerics
def test_features_resize_scale_and_batch(released_layout_weights: Path):
    features = InceptionFeatures(released_layout_weights, device="cpu", batch_size=2)
    assert not features.network.training
    frames = np.zeros((3, 20, 24, 3), np.uint8)
    frames[:, :, 12:] = 255
    frames[1, :10] = 128
    seen = []
    hook = features.network.Conv2d_1a_3x3.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    out = features(frames)
    hook.remove()
    assert out.shape == (3, 2048) and out.dtype == np.float64 and np.isfinite(out).all()
    assert [tuple(x.shape) for x in seen] == [(2, 3, 299, 299), (1, 3, 299, 299)]
    # [0, 255] -> [-1, 1]; bilinear weights w and 1 - w may sum to 1 + eps32 (seen with oneDNN off, 1 thread)
    assert min(x.min().item() for x in seen) == pytest.approx(-1.0, abs=4 * EPS32)
    assert max(x.max().item() for x in seen) == pytest.approx(1.0, abs=4 * EPS32)
    assert np.abs(out[0] - out[1]).max() > 1e-2
    whole = InceptionFeatures(released_layout_weights, device="cpu", batch_size=3)(torch.from_numpy(frames))
    np.testing.assert_allclose(whole, out, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="uint8"):
        features(frames.astype(np.float32))


def test_fid_metric_is_skipped_without_weights(tmp_path: Path):
    absent = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    config = Config({"evaluate": {"inception_weights": str(absent)}})
    reason = f"pt_inception-2015-12-05-6726825d.pth not found at {absent}; see checkpoints/README.md"
    assert FIDMetric(config).unavailable() == reason
    assert FIDMetric(None).needs_reference
    with pytest.raises(ConfigError, match="fid_frame_stride"):
        FIDMetric(Config({"evaluate": {"fid_frame_stride": 0}}))
    evaluator = Evaluator(["fid"], config=config, progress=False)
    assert evaluator.skipped == {"fid": f"skipped ({reason})"} and not evaluator.metrics


def sample(frames: np.ndarray) -> VideoSample:
    video = VideoSample(Path("in-memory.mp4"))
    video.frames = frames  # fills the cached property: no decoding
    return video


@pytest.mark.numerics
def test_fid_metric_pools_strided_frames_of_all_videos(released_layout_weights: Path, monkeypatch):
    config = Config({"device": "cpu", "evaluate": {"inception_weights": str(released_layout_weights),
                                                   "fid_frame_stride": 2}})
    metric = FIDMetric(config)
    assert metric.unavailable() is None
    with pytest.raises(CheckpointError, match="is not the released pt_inception"):
        metric.features
    digest = sha256_of(released_layout_weights)
    test_release = KnownWeights(released_layout_weights.name, "test", "fid", sha256_prefix=digest)
    monkeypatch.setattr(fid_metric_module, "FID_INCEPTION", test_release)
    videos = [np.zeros((3, 16, 16, 3), np.uint8) for _ in range(2)]
    for v, video in enumerate(videos):
        for t in range(3):
            video[t, :, : 4 + 4 * v] = 40 + 80 * t  # a distinct picture per frame: features differ
    for video in videos:
        assert metric.update(sample(video), sample(video[::-1].copy())) == {}
    pooled = []
    # a 2048x2048 sqrtm takes tens of seconds on two cores; the distance itself is tested above
    monkeypatch.setattr(fid_metric_module, "frechet_distance", lambda a, b: pooled.append((a, b)) or 1.5)
    assert metric.compute() == {"fid": 1.5}
    generated, reference = pooled[0]
    assert generated.shape == reference.shape == (4, 2048)  # frames 0 and 2 of both videos
    np.testing.assert_allclose(reference, generated[[1, 0, 3, 2]], rtol=1e-4, atol=1e-4)
    distinct = [np.abs(generated[i] - generated[j]).max() for i in range(4) for j in range(i)]
    assert min(distinct) > 1e-2
    metric.reset()
    with pytest.raises(DataError, match="at least 2 frames"):
        metric.compute()
