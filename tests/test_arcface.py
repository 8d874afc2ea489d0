"""ArcFace iresnet backbones (talkingface.face.arcface) against insightface arcface_torch's original ``iresnet.py`` as
VideoReTalking vendors it, and the identity loss.

``tests/fixtures/arcface/official_arcface.npz`` holds what the original code computed (``make_fixture.py``:
OpenTalker/video-retalking d32e8e5, ``backbones.get_model``, Deep3DFaceRecon's ``perceptual_loss``): the state-dict
layouts of r18, r50 and r100 (the released ``ms1mv3_arcface_r100_fp16/backbone.pth``'s architecture), and the float64
embeddings of seeded r18 / r50 networks (``seeded.py``) for scikit-image's astronaut face, its mirror image and noise.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from talkingface.errors import CheckpointError
from talkingface.face.arcface import (ARCFACE_R100, DEPTHS, IBasicBlock, IResNet, identity_loss, iresnet, iresnet18,
                                      iresnet34, iresnet50, iresnet100, iresnet200, load_arcface, normalize,
                                      prepare_faces)

from breaks import mutated
from fixture_tools import load_module, state_layout
from numerics import assert_close64, assert_fp32_close, fp32_bound, max_abs_diff, scale_of

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "arcface"
seeded = load_module(FIXTURES / "seeded.py", "arcface_seeded")
OFFICIAL = dict(np.load(FIXTURES / "official_arcface.npz"))
IMAGES = seeded.images_from(OFFICIAL["astronaut"])  # astronaut, mirror, noise: (3, 112, 112, 3) uint8 RGB
# float32 bound (docs/testing.md rule 4): depth = the conv/linear layers on the longest path (the stem conv, two per
# block, fc: 18 for r18, 50 for r50), terms = the largest fan-in (fc's 512 x 7 x 7 = 25088; the 3x3 convolutions
# of layer4 sum 4608).
TERMS = 512 * 7 * 7
DEPTH = {"r18": 1 + 2 * sum(DEPTHS["r18"]) + 1, "r50": 1 + 2 * sum(DEPTHS["r50"]) + 1}


def official(key: str) -> np.ndarray:
    return OFFICIAL[key]


@pytest.fixture(scope="module")
def r18() -> IResNet:
    return seeded.seeded_network("r18")


@pytest.fixture(scope="module")
def r50() -> IResNet:
    return seeded.seeded_network("r50")


@pytest.fixture(scope="module")
def r18_64(r18) -> IResNet:
    return copy.deepcopy(r18).double()


# ---- layout -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["r18", "r50", "r100"])
def test_state_dict_is_the_official_layout_in_order(name):
    """Keys, shapes and dtypes in order, the frozen parameters and the parameter count equal the official
    ``get_model(name)``'s (r100: the architecture of ``ms1mv3_arcface_r100_fp16/backbone.pth``)."""
    with torch.device("meta"):
        net = iresnet(name)
    ours = [(k, "x".join(map(str, shape)), dtype) for k, shape, dtype in state_layout(net)]
    prefix = f"official_{name}"
    assert ours == list(zip(official(f"{prefix}_keys"), official(f"{prefix}_shapes"), official(f"{prefix}_dtypes")))
    assert [k for k, p in net.named_parameters() if not p.requires_grad] == list(official(f"{prefix}_frozen"))
    assert sum(p.numel() for p in net.parameters()) == int(official(f"{prefix}_parameters"))


def test_r100_layout_by_hand():
    """Written out independently of the listing: the released r100's sizes and the quirks that define its keys."""
    with torch.device("meta"):
        net = iresnet100()
    state = net.state_dict()
    assert len(state) == 925 and sum(p.numel() for p in net.parameters()) == 65_156_160
    assert tuple(state["conv1.weight"].shape) == (64, 3, 3, 3) and tuple(state["prelu.weight"].shape) == (64,)
    assert tuple(state["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1)
    assert "layer2.1.downsample.0.weight" not in state and len(net.layer3) == 30
    assert tuple(state["layer4.2.conv2.weight"].shape) == (512, 512, 3, 3)
    assert tuple(state["fc.weight"].shape) == (512, 512 * 7 * 7) and IResNet.fc_scale == 49
    assert tuple(state["features.running_var"].shape) == (512,) and not net.features.weight.requires_grad
    with torch.device("meta"):
        deeper, shallower = iresnet200(), iresnet34()
    assert [len(getattr(deeper, f"layer{i}")) for i in range(1, 5)] == [6, 26, 60, 6]
    assert [len(getattr(shallower, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]


def test_constructor_options_as_the_original():
    net = iresnet18()
    assert torch.equal(net.features.weight, torch.ones(512)) and not net.features.weight.requires_grad
    assert all(not b.bn2.weight.detach().any() for b in iresnet18(zero_init_residual=True).modules()
               if isinstance(b, IBasicBlock))  # the original zeroes bn2 (not bn3)
    with pytest.raises(NotImplementedError):
        iresnet18(replace_stride_with_dilation=[False, True, False])
    with pytest.raises(ValueError):
        IResNet(IBasicBlock, DEPTHS["r18"], groups=2)
    with pytest.raises(ValueError, match="unknown iresnet 'r101'"):
        iresnet("r101")
    with torch.device("meta"):
        assert iresnet50(dropout=0.4).dropout.p == 0.4 and iresnet50(num_features=128).fc.out_features == 128


def test_seeded_weights_and_images_are_the_fixture_ones(r18, r50):
    import hashlib

    assert seeded.weight_digest(r18) == str(official("r18_sha256_weights"))
    assert seeded.weight_digest(r50) == str(official("r50_sha256_weights"))
    for name, image in zip(seeded.IMAGES, IMAGES):
        assert hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() == str(official(f"{name}_sha256"))


def test_input_scaling_is_arcface_torchs():
    """``normalize`` of [0, 1] images and ``prepare_faces`` of 112 crops give inference.py's (x / 255 - 0.5) / 0.5."""
    x = torch.from_numpy(IMAGES.transpose(0, 3, 1, 2).copy()).double()
    expected = seeded.network_input(IMAGES)
    assert torch.equal(normalize(x / 255), expected) and torch.equal(prepare_faces(x / 255), expected)
    assert torch.equal(prepare_faces((x / 255).flip(1), color="bgr"), expected)


# ---- the official embeddings --------------------------------------------------------------------------------------
@pytest.mark.numerics
def test_float64_embeddings_equal_the_official(r18_64, r50):
    """float64: r18 on the three images, r50 on the astronaut (BatchNorm in eval mode is per sample), within
    ``REL64`` of the official embeddings' scale (measured: 0 with the native, avx2 and no-oneDNN kernels, 3e-15 and
    6e-15 of the scale with sse4)."""
    x = seeded.network_input(IMAGES)
    with torch.no_grad():
        assert_close64(r18_64(x), official("r18_embeddings"), "r18")
        assert_close64(copy.deepcopy(r50).double()(x[:1]), official("r50_embeddings")[:1], "r50")


@pytest.mark.numerics
def test_float32_embeddings_within_the_float32_bound_and_breaks_miss_it(r18, r50, monkeypatch):
    """float32 against the official float64 embeddings within ``fp32_bound(scale, 25088, depth)`` (depth 18 / 50).

    Measured on this AVX-512 EPYC, one thread (max |float32 - float64| in eps32 x scale; native / avx2 / sse4 /
    no-oneDNN kernel sets): r18 16 / 20 / 20 / 16, r50 15 / 24 / 22 / 17; the bounds are 2.3e4 (r18, 1.3e-2) and
    6.3e4 (r50, 0.12) eps32 x scale. Breaks planted in ``IBasicBlock.forward``, run on r18 (astronaut): PReLU replaced
    by ReLU misses the bound by 76x (1.02), the block's first BatchNorm skipped by 96x (1.29); on r50 they would miss
    its bound by 47x and 51x."""
    x = seeded.network_input(IMAGES, torch.float32)
    bounds = {}
    for name, net, batch in (("r18", r18, 3), ("r50", r50, 1)):
        expected = official(f"{name}_embeddings")[:batch]
        bounds[name] = fp32_bound(scale_of(expected), TERMS, DEPTH[name])
        with torch.no_grad():
            ours = net(x[:batch])
        assert ours.dtype == torch.float32
        assert_fp32_close(ours, expected, bounds[name], name)
    expected = official("r18_embeddings")[:1]
    for edit in (("self.prelu(", "torch.relu("), ("self.bn1(x)", "x")):
        with monkeypatch.context() as patch:
            mutated(patch, IBasicBlock, "forward", *edit)
            with torch.no_grad():
                broken = max_abs_diff(r18(x[:1]), expected)
        assert broken >= 10 * bounds["r18"], f"{edit}: {broken:.3g} vs bound {bounds['r18']:.3g}"


def test_fp16_flag_leaves_cpu_tensors_alone(r18):
    """As the original's ``torch.cuda.amp.autocast(self.fp16)``: on CPU ``fp16=True`` changes nothing (the cast to
    float32 before ``fc`` is a no-op on float32), bit for bit."""
    half = iresnet18(fp16=True)
    half.load_state_dict(r18.state_dict())
    x = seeded.network_input(IMAGES[:1], torch.float32)
    with torch.no_grad():
        assert torch.equal(half.eval()(x), r18(x))


# ---- identity loss --------------------------------------------------------------------------------------------------
def faces(indices, dtype=torch.float32) -> torch.Tensor:
    """Images of the fixture by index, (B, 3, 112, 112) RGB in [0, 1]."""
    return torch.from_numpy(IMAGES[list(indices)].transpose(0, 3, 1, 2).copy()).to(dtype) / 255


class RecordedEmbeddings(torch.nn.Module):
    """A stand-in backbone returning the official float64 r18 embeddings of the fixture's images: each input row must
    equal, bit for bit, one image as arcface_torch's ``inference.py`` prepares it."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs = seeded.network_input(IMAGES)
        self.embeddings = torch.from_numpy(official("r18_embeddings"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = [next(i for i, image in enumerate(self.inputs) if torch.equal(row, image)) for row in x]
        return self.embeddings[rows]


def test_identity_loss_equals_deep3dfacerecons_perceptual_loss():
    """float64, on the official r18 embeddings (those of our r18 equal them: ``test_float64_embeddings_equal_the_
    official``): fake = (astronaut, noise), real = (mirror, astronaut) -> the official ``perceptual_loss`` of the
    L2-normalised embeddings (``RecogNetWrapper``'s ``F.normalize``), within ``REL64``; the inputs the stand-in sees
    are exactly inference.py's."""
    fake, real = faces(official("loss_fake"), torch.float64), faces(official("loss_real"), torch.float64)
    loss = identity_loss(RecordedEmbeddings(), fake, real)
    assert loss.dtype == torch.float64 and loss.ndim == 0
    assert_close64(loss, official("r18_loss"), "identity loss")
    swapped = identity_loss(RecordedEmbeddings(), real, fake)  # symmetric in its value
    assert_close64(swapped, official("r18_loss"), "identity loss, fake and real swapped")


def test_identity_loss_is_zero_for_the_same_faces_and_positive_otherwise(r18):
    same = identity_loss(r18, faces([0, 2]), faces([0, 2]))
    assert abs(float(same)) < 1e-6
    differs = identity_loss(r18, faces([0, 2]), faces([1, 0]))
    assert 0.1 < float(differs) < 2


def test_identity_loss_gradients_reach_fake_only_with_the_backbone_frozen(r18):
    """Gradients flow to ``fake``, none to the backbone's weights (even those with ``requires_grad``) or to ``real``;
    a backbone left in train mode is put in eval mode, so BatchNorm keeps its running statistics."""
    net = copy.deepcopy(r18).train()
    assert any(p.requires_grad for p in net.parameters())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fake, real = faces([0, 2]).requires_grad_(True), faces([1, 0]).requires_grad_(True)
    loss = identity_loss(net, fake, real)
    loss.backward()
    assert not net.training
    assert fake.grad is not None and torch.isfinite(fake.grad).all() and float(fake.grad.abs().max()) > 0
    assert real.grad is None and all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert float(loss.detach()) == pytest.approx(float(identity_loss(r18, faces([0, 2]), faces([1, 0]))), abs=1e-6)


def test_identity_loss_resizes_any_crop_and_takes_bgr(r18):
    """A 150 x 130 crop is fed whole, resized to 112 x 112 (bilinear, no antialiasing): the same loss as the crop
    resized beforehand; BGR input with ``color='bgr'`` gives the RGB loss."""
    g = torch.Generator().manual_seed(5)
    fake, real = torch.rand((2, 3, 150, 130), generator=g), torch.rand((2, 3, 150, 130), generator=g)
    resize = lambda x: F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)  # noqa: E731
    loss = identity_loss(r18, fake, real)
    assert torch.equal(loss, identity_loss(r18, resize(fake), resize(real)))
    assert torch.equal(identity_loss(r18, fake.flip(1), real.flip(1), color="bgr"), loss)
    with pytest.raises(ValueError, match="same shape"):
        identity_loss(r18, fake, real[:1])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        identity_loss(r18, fake[:, :1], real[:, :1])


# ---- loading --------------------------------------------------------------------------------------------------------
def test_load_arcface_reads_a_bare_state_dict_strictly_and_freezes_it(r18, tmp_path: Path):
    state = r18.state_dict()
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, tmp_path / "backbone.pth")
    net = load_arcface(tmp_path / "backbone.pth", name="r18")
    assert isinstance(net, IResNet) and not net.training
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    assert not any(p.requires_grad for p in net.parameters())
    torch.save({"state_dict": state}, tmp_path / "wrapped.pth")
    with pytest.raises(CheckpointError, match=r"wrapped\.pth: expected a bare iresnet state dict"):
        load_arcface(tmp_path / "wrapped.pth", name="r18")
    torch.save({**state, "module.extra": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"extra\.pth does not match IResNet: unexpected keys \(1\): "
                                              r"module\.extra"):
        load_arcface(tmp_path / "extra.pth", name="r18")
    with pytest.raises(CheckpointError, match=r"backbone\.pth does not match IResNet: missing keys \(144\): "
                                              r"layer1\.2\."):
        load_arcface(tmp_path / "backbone.pth", name="r34")


def test_a_missing_weights_file_is_named_with_where_to_get_it(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"ms1mv3_arcface_r100_fp16/backbone\.pth not found at "
                                              r"checkpoints/ms1mv3_arcface_r100_fp16/backbone\.pth: get it from "
                                              r"insightface arcface_torch model zoo"):
        load_arcface()
    with pytest.raises(CheckpointError, match=r"not found at .*elsewhere\.pth"):
        load_arcface(tmp_path / "elsewhere.pth")
    with pytest.raises(CheckpointError, match="no released file is declared for iresnet 'r50'"):
        load_arcface(name="r50")
    assert ARCFACE_R100.default_path() == Path("checkpoints/ms1mv3_arcface_r100_fp16/backbone.pth")
    assert "non-commercial research purposes only" in ARCFACE_R100.licence and "MIT" in ARCFACE_R100.licence
