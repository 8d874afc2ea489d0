import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from talkingface.errors import CheckpointError, ConfigError
from talkingface.evaluation import LPIPS, Evaluator
from talkingface.evaluation.lpips import AlexNetFeatures, LinearHeads, LPIPSMetric, LPIPSNetwork, VGG16Features
from talkingface.evaluation.lpips import weights as lpips_weights
from talkingface.evaluation.lpips.network import SqueezeNet11Features
from talkingface.evaluation.lpips.scorer import MIN_SIZE
from talkingface.evaluation.metric import VideoSample
from talkingface.weights import sha256_of

# torchvision's layouts, written out: (features index, out channels, in channels, kernel)
ALEX_CONVS = [(0, 64, 3, 11), (3, 192, 64, 5), (6, 384, 192, 3), (8, 256, 384, 3), (10, 256, 256, 3)]
VGG_CONVS = [(0, 64, 3), (2, 64, 64), (5, 128, 64), (7, 128, 128), (10, 256, 128), (12, 256, 256), (14, 256, 256),
             (17, 512, 256), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512), (28, 512, 512)]
VGG_CONVS = [(i, o, c, 3) for i, o, c in VGG_CONVS]


def expected_layout(convs):
    shapes = {}
    for index, out, inp, k in convs:
        shapes[f"features.{index}.weight"] = (out, inp, k, k)
        shapes[f"features.{index}.bias"] = (out,)
    return shapes


@pytest.mark.parametrize("module, convs, count", [(AlexNetFeatures, ALEX_CONVS, 2_469_696),
                                                  (VGG16Features, VGG_CONVS, 14_714_688)])
def test_backbone_layouts_equal_torchvision(module, convs, count):
    shapes = expected_layout(convs)
    assert sum(int(np.prod(s)) for s in shapes.values()) == count  # the number follows from the shapes
    state = module().state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == shapes
    assert sum(p.numel() for p in module().parameters()) == count


def test_squeezenet_layout_has_torchvision_fire_names():
    state = SqueezeNet11Features().state_dict()
    assert tuple(state["features.0.weight"].shape) == (64, 3, 3, 3)
    assert tuple(state["features.12.expand3x3.weight"].shape) == (256, 64, 3, 3)
    assert len(state) == 2 + 8 * 3 * 2  # first conv + 8 fire modules of 3 convs, weight and bias
    # torchvision squeezenet1_1: 1,235,496 parameters, of which the classifier conv 512*1000 + 1000
    assert sum(v.numel() for v in state.values()) == 1_235_496 - 513_000


@pytest.mark.parametrize("net, channels", [("alex", (64, 192, 384, 256, 256)), ("vgg", (64, 128, 256, 512, 512)),
                                           ("squeeze", (64, 128, 256, 384, 384, 512, 512))])
def test_head_layout_and_tap_channels(net, channels):
    network = LPIPSNetwork(net)
    heads = {k: tuple(v.shape) for k, v in network.heads.state_dict().items()}
    assert heads == {f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate(channels)}
    size = 64
    taps = network.backbone(torch.zeros(1, 3, size, size))
    assert tuple(t.shape[1] for t in taps) == channels
    assert set(network.state_dict()) == {f"backbone.{k}" for k in network.backbone.state_dict()} | \
        {f"heads.{k}" for k in heads}  # the scaling constants are not weights


def random_files(tmp_path: Path, net: str, seed: int = 0) -> tuple[Path, Path]:
    """A torchvision-style backbone file (with classifier keys) and a non-negative head file."""
    torch.manual_seed(seed)
    network = LPIPSNetwork(net)
    backbone = {**network.backbone.state_dict(),
                "classifier.1.weight": torch.randn(10, 4), "classifier.1.bias": torch.randn(10)}
    heads = {k: torch.rand_like(v) for k, v in network.heads.state_dict().items()}
    torch.save(backbone, tmp_path / f"backbone_{net}.pth")
    torch.save(heads, tmp_path / f"head_{net}.pth")
    return tmp_path / f"backbone_{net}.pth", tmp_path / f"head_{net}.pth"


def reference_lpips(frames_a, frames_b, backbone, heads, net):
    """LPIPS spelled out step by step in float64, straight from the state dicts."""
    def features(frames):
        x = torch.from_numpy(frames.astype(np.float64) / 127.5 - 1.0).permute(0, 3, 1, 2)
        x = (x - torch.tensor([-.030, -.088, -.188], dtype=torch.float64).view(1, 3, 1, 1)) \
            / torch.tensor([.458, .448, .450], dtype=torch.float64).view(1, 3, 1, 1)

        def conv(x, i, stride=1, padding=1):
            return F.relu(F.conv2d(x, backbone[f"features.{i}.weight"].double(),
                                   backbone[f"features.{i}.bias"].double(), stride=stride, padding=padding))
        taps = []
        if net == "alex":
            taps.append(conv(x, 0, 4, 2))
            taps.append(conv(F.max_pool2d(taps[-1], 3, 2), 3, 1, 2))
            taps.append(conv(F.max_pool2d(taps[-1], 3, 2), 6))
            taps.append(conv(taps[-1], 8))
            taps.append(conv(taps[-1], 10))
        else:
            for block, indices in enumerate([(0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28)]):
                if block:
                    x = F.max_pool2d(x, 2, 2)
                for i in indices:
                    x = conv(x, i)
                taps.append(x)
        return [t.numpy() for t in taps]

    total = np.zeros(len(frames_a))
    for k, (fa, fb) in enumerate(zip(features(frames_a), features(frames_b))):
        weight = heads[f"lin{k}.model.1.weight"].double().numpy().reshape(-1)
        for n in range(len(frames_a)):
            ua = fa[n] / (np.sqrt((fa[n] ** 2).sum(axis=0)) + 1e-10)
            ub = fb[n] / (np.sqrt((fb[n] ** 2).sum(axis=0)) + 1e-10)
            weighted = np.tensordot(weight, (ua - ub) ** 2, axes=(0, 0))  # (H, W)
            total[n] += weighted.mean()
    return total


def frames(seed: int, n: int, size: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.numerics
@pytest.mark.parametrize("net, size", [("alex", 64), ("vgg", 32)])
def test_distance_equals_a_literal_float64_computation(tmp_path, net, size):
    backbone_path, head_path = random_files(tmp_path, net)
    scorer = LPIPS(net, backbone_path, head_path, device="cpu", batch_size=2, check_sha256=False)
    a, b = frames(1, 3, size), frames(2, 3, size)
    b[0] = np.clip(a[0].astype(int) + 10, 0, 255)  # one close pair
    got = scorer(a, b)
    assert got.dtype == np.float64 and got.shape == (3,)
    backbone = torch.load(backbone_path, weights_only=True)
    heads = torch.load(head_path, weights_only=True)
    expected = reference_lpips(a, b, backbone, heads, net)
    np.testing.assert_allclose(got, expected, rtol=2e-5)
    assert got[0] < got[1]
    assert np.all(scorer(a, a) == 0)
    np.testing.assert_allclose(scorer(b, a), got, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="uint8"):
        scorer(a.astype(np.float32), b)
    with pytest.raises(ValueError, match="at least"):
        scorer(a[:, :MIN_SIZE[net] - 1, :MIN_SIZE[net] - 1], b[:, :MIN_SIZE[net] - 1, :MIN_SIZE[net] - 1])


@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_minimum_frame_size_is_the_smallest_that_runs(net):
    network = LPIPSNetwork(net).eval()
    with torch.no_grad():
        network.backbone(torch.zeros(1, 3, MIN_SIZE[net], MIN_SIZE[net]))
        with pytest.raises(RuntimeError):
            network.backbone(torch.zeros(1, 3, MIN_SIZE[net] - 1, MIN_SIZE[net] - 1))


def test_only_classifier_keys_are_dropped(tmp_path):
    backbone_path, _ = random_files(tmp_path, "alex")
    network = LPIPSNetwork("alex")
    lpips_weights.load_backbone(network.backbone, backbone_path)  # classifier.* dropped silently
    saved = torch.load(backbone_path, weights_only=True)
    torch.testing.assert_close(network.backbone.state_dict()["features.8.weight"], saved["features.8.weight"])

    extra = tmp_path / "extra.pth"
    torch.save({**saved, "features.13.weight": torch.zeros(1)}, extra)
    with pytest.raises(CheckpointError, match=r"extra\.pth.*features\.13\.weight"):
        lpips_weights.load_backbone(network.backbone, extra)
    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in saved.items() if k != "features.3.bias"}, missing)
    with pytest.raises(CheckpointError, match=r"missing\.pth.*features\.3\.bias"):
        lpips_weights.load_backbone(network.backbone, missing)
    bad_head = tmp_path / "head.pth"
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}, bad_head)
    with pytest.raises(CheckpointError, match=r"head\.pth.*lin1\.model\.1\.weight"):
        lpips_weights.load_heads(network.heads, bad_head)


@pytest.fixture
def no_files(tmp_path, monkeypatch):
    """An empty working directory and no installed lpips package."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lpips_weights, "installed_package_head", lambda net: None)
    return tmp_path


def test_missing_files_are_reported_as_skipped(no_files):
    metric = LPIPSMetric()
    assert metric.unavailable() == ("alexnet-owt-7be5be79.pth not found at checkpoints/alexnet-owt-7be5be79.pth; "
                                    "see checkpoints/README.md")
    (no_files / "checkpoints").mkdir()
    (no_files / "checkpoints" / "vgg16-397923af.pth").write_bytes(b"x")
    config = {"evaluate": {"lpips_net": "vgg"}}
    assert LPIPSMetric(config).unavailable() == ("lpips_v0.1_vgg.pth not found at checkpoints/lpips_v0.1_vgg.pth; "
                                                 "see checkpoints/README.md")
    evaluator = Evaluator(["lpips"], config, progress=False)
    assert evaluator.metrics == {}
    assert evaluator.skipped == {"lpips": "skipped (lpips_v0.1_vgg.pth not found at checkpoints/lpips_v0.1_vgg.pth; "
                                          "see checkpoints/README.md)"}
    with pytest.raises(CheckpointError, match="not found"):
        LPIPS("vgg")


def test_files_with_another_sha256_are_refused(no_files):
    backbone_path, head_path = random_files(no_files, "alex")
    config = {"evaluate": {"lpips_backbone_weights": str(backbone_path), "lpips_head_weights": str(head_path)}}
    metric = LPIPSMetric(config)
    assert metric.unavailable() is None
    with pytest.raises(CheckpointError, match=r"not the released alexnet-owt-7be5be79\.pth.*7be5be79"):
        metric.lpips
    real_backbone = lpips_weights.BACKBONE_WEIGHTS["alex"]
    lookalike = type(real_backbone)(real_backbone.filename, real_backbone.source, real_backbone.used_by,
                                    sha256_prefix=sha256_of(backbone_path)[:8])
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(lpips_weights.BACKBONE_WEIGHTS, "alex", lookalike)
        with pytest.raises(CheckpointError, match=r"not the released lpips_v0\.1_alex\.pth.*df73285e"):
            LPIPS("alex", backbone_path, head_path)


def test_head_file_search_order_never_imports_lpips(no_files, monkeypatch):
    monkeypatch.undo()  # restore the real installed_package_head, keep a clean directory
    monkeypatch.chdir(no_files)
    site = no_files / "site"
    (site / "lpips" / "weights" / "v0.1").mkdir(parents=True)
    (site / "lpips" / "__init__.py").write_text("raise RuntimeError('lpips must not be imported')\n")
    (site / "lpips" / "weights" / "v0.1" / "alex.pth").write_bytes(b"head")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "lpips", raising=False)
    assert lpips_weights.resolve_head_path("alex") == site / "lpips" / "weights" / "v0.1" / "alex.pth"
    assert lpips_weights.resolve_head_path("vgg") == Path("checkpoints/lpips_v0.1_vgg.pth")  # absent: default
    (no_files / "checkpoints").mkdir()
    (no_files / "checkpoints" / "lpips_v0.1_alex.pth").write_bytes(b"head")
    assert lpips_weights.resolve_head_path("alex") == Path("checkpoints/lpips_v0.1_alex.pth")
    assert lpips_weights.resolve_head_path("alex", "elsewhere.pth") == Path("elsewhere.pth")
    assert "lpips" not in sys.modules


def sample(path: str, array: np.ndarray) -> VideoSample:
    video = VideoSample(Path(path))
    video.__dict__["frames"] = array  # the decoded frames, as the cached property would hold them
    return video


def test_metric_is_the_mean_over_paired_frames_then_over_videos(tmp_path):
    backbone_path, head_path = random_files(tmp_path, "alex")
    scorer = LPIPS("alex", backbone_path, head_path, device="cpu", check_sha256=False)
    metric = LPIPSMetric({"evaluate": {"lpips_frame_stride": 2}})
    metric.__dict__["lpips"] = scorer  # random weights instead of the (checked) released files
    a, b = frames(3, 5, 40), frames(4, 7, 40)  # longer reference: compared over 5 frames
    first = metric.update(sample("g.mp4", a), sample("r.mp4", b))["lpips"]
    assert first == pytest.approx(float(np.mean(scorer(a[::2], b[:5:2]))), rel=1e-12)
    second = metric.update(sample("g2.mp4", a), sample("r2.mp4", a))["lpips"]
    assert second == 0.0
    assert metric.compute() == {"lpips": pytest.approx((first + second) / 2)}
    assert LPIPSMetric.higher_is_better == {"lpips": False} and LPIPSMetric.needs_reference


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="lpips_net"):
        LPIPSMetric({"evaluate": {"lpips_net": "resnet"}})
    with pytest.raises(ConfigError, match="lpips_frame_stride"):
        LPIPSMetric({"evaluate": {"lpips_frame_stride": 0}})
