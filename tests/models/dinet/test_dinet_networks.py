"""DINet's networks: official key layout, parameter counts, checkpoint conversion, outputs equal to the
release's own classes (fixture made by tests/models/dinet/fixtures/make_fixture.py), VGG19 perceptual loss."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import talkingface
from talkingface.errors import CheckpointError, ConfigError
from talkingface.models.common import PERCEPTUAL_LOSS_WEIGHT, VGG19_WEIGHTS, Vgg19Features, perceptual_loss
from talkingface.models.dinet.networks import (PI, AdaAT, DINetGenerator, DINetNetworks, DINetSyncNet, Discriminator,
                                               convert_dinet_checkpoint, face_size, mouth_box)
from talkingface.models.dinet.networks import adaat as adaat_module

from fixture_tools import load_module, state_layout
from numerics import REL64, assert_close64, assert_fp32_close, fp32_bound, max_abs_diff, scale_of

FIXTURES = Path(__file__).resolve().parent / "fixtures"


seeded = load_module(FIXTURES / "seeded.py", "dinet_seeded_fixture")
dinet_layout = load_module(Path(__file__).resolve().parent / "layout.py", "dinet_layout")

# ---- published layout ------------------------------------------------------------------------------
PUBLISHED_PARAMS = {"generator": 19_190_275, "syncnet": 3_277_121,
                    "frame_discriminator": 2_628_737, "clip_discriminator": 2_653_313}
PUBLISHED_ENTRIES = {"generator": 332, "syncnet": 68, "frame_discriminator": 10, "clip_discriminator": 10}
OFFICIAL = dinet_layout.official_layout()


def build(name: str) -> torch.nn.Module:
    return {"generator": lambda: DINetGenerator(3, 15, 29), "syncnet": lambda: DINetSyncNet(15, 29, 128),
            "frame_discriminator": lambda: Discriminator(3, 64, 4, 256),
            "clip_discriminator": lambda: Discriminator(15, 64, 4, 256)}[name]()


@pytest.fixture(scope="module")
def networks() -> DINetNetworks:
    return DINetNetworks(64)


@pytest.mark.parametrize("name", list(PUBLISHED_ENTRIES))
def test_state_dict_layout_equals_official_listing(name, networks):
    expected = OFFICIAL[f"networks.{name}"]
    assert len(expected) == PUBLISHED_ENTRIES[name]
    assert state_layout(getattr(networks, name)) == expected  # names, order, shapes and dtypes


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMS))
def test_parameter_counts(name, networks):
    module = getattr(networks, name)
    assert sum(p.numel() for p in module.parameters()) == PUBLISHED_PARAMS[name]
    assert len(module.state_dict()) == PUBLISHED_ENTRIES[name]


def test_generator_part_counts(networks):
    parts = {"source_in_conv": 379_392, "ref_in_conv": 417_024, "trans_conv": 7_049_344, "audio_encoder": 365_696,
             "appearance_conv_list": 9_449_472, "adaAT": 328_960, "out_conv": 1_200_387}
    for part, count in parts.items():
        assert sum(p.numel() for p in getattr(networks.generator, part).parameters()) == count, part


def test_audio_encoder_width_follows_audio_channel():
    with torch.device("meta"):
        generator = DINetGenerator(audio_channel=1024)
        out = generator(torch.empty(1, 3, 104, 80), torch.empty(1, 15, 104, 80), torch.empty(1, 1024, 5))
    assert generator.audio_encoder[0].conv.weight.shape == (128, 1024, 5)
    assert out.shape == (1, 3, 104, 80)


@pytest.mark.parametrize("mouth", [64, 128, 256])
def test_shapes_per_mouth_size(mouth):
    height, width = face_size(mouth)
    small = mouth // 32
    with torch.device("meta"):  # shapes only: a real forward at 256 costs ~359 GFLOP
        nets = DINetNetworks(mouth)
        out = nets.generator(torch.empty(2, 3, height, width), torch.empty(2, 15, height, width),
                             torch.empty(2, 29, 5))
        score = nets.syncnet(torch.empty(2, 15, mouth, mouth), torch.empty(2, 29, 9))
        maps, logits = nets.frame_discriminator(torch.empty(2, 3, height, width))
        _, clip_logits = nets.clip_discriminator(torch.empty(2, 15, height, width))
    assert out.shape == (2, 3, height, width)
    assert score.shape == (2, 1, small, small)
    assert len(maps) == 4 and logits.shape == clip_logits.shape
    if mouth == 256:
        assert logits.shape == (2, 1, 46, 34)


def test_geometry():
    assert [face_size(m) for m in (64, 128, 256, 288)] == [(104, 80), (208, 160), (416, 320), (468, 360)]
    assert mouth_box(256) == (128, 384, 32, 288)
    assert mouth_box(64) == (32, 96, 8, 72)
    assert DINetNetworks.face_size(128) == (208, 160)
    nets = DINetNetworks(64)
    faces = torch.ones(1, 3, 104, 80)
    assert nets.crop_mouth(faces).shape == (1, 3, 64, 64)
    masked = nets.mask_mouth(faces)
    assert masked[..., 32:96, 8:72].abs().sum() == 0 and masked.sum() == 3 * (104 * 80 - 64 * 64)
    for bad in (0, 48, 100, -64):
        with pytest.raises(ConfigError):
            face_size(bad)


# ---- official checkpoint layouts --------------------------------------------------------------------
def random_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=g) if v.is_floating_point()
                else torch.randint(0, 1000, v.shape, generator=g)) for k, v in module.state_dict().items()}


def official_release(parts: dict[str, dict[str, torch.Tensor]]) -> dict:
    tiny = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(tiny.parameters())
    tiny(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    return {"epoch": 160, "optimizer": {"net_g": optimizer.state_dict()},
            "state_dict": {name: {f"module.{k}": v for k, v in sd.items()} for name, sd in parts.items()}}


def dinet64():
    return talkingface.build_model("dinet", {"mouth_region_size": 64})


def release_file(tmp_path, name: str, obj) -> Path:
    torch.save(obj, tmp_path / name)
    return tmp_path / name


def test_clip_checkpoint_round_trip(tmp_path):
    model = dinet64()
    nets = model.networks
    ours = {"net_g": random_state(nets.generator, 1), "net_dI": random_state(nets.frame_discriminator, 2),
            "net_dV": random_state(nets.clip_discriminator, 3)}
    path = release_file(tmp_path, "clip_training_DINet_256mouth.pth", official_release(ours))
    syncnet_before = {k: v.clone() for k, v in nets.syncnet.state_dict().items()}
    assert model.load_checkpoint(path) is model
    for official, attr in (("net_g", "generator"), ("net_dI", "frame_discriminator"),
                           ("net_dV", "clip_discriminator")):
        loaded = getattr(nets, attr).state_dict()
        assert loaded.keys() == ours[official].keys()
        assert all(torch.equal(loaded[k], ours[official][k]) for k in loaded), attr
    assert all(torch.equal(nets.syncnet.state_dict()[k], v) for k, v in syncnet_before.items())


def test_frame_stage_and_syncnet_files(tmp_path):
    model = dinet64()
    nets = model.networks
    frame = {"net_g": random_state(nets.generator, 4), "net_dI": random_state(nets.frame_discriminator, 5)}
    converted = convert_dinet_checkpoint(official_release(frame))
    assert sorted(converted) == ["frame_discriminator", "generator"]
    assert not any(k.startswith("module.") for k in converted["generator"])
    parts = model.convert_official_checkpoint(official_release(frame), "frame.pth")
    assert sorted(parts) == ["networks.frame_discriminator", "networks.generator"]

    sync = random_state(nets.syncnet, 6)
    generator_before = {k: v.clone() for k, v in nets.generator.state_dict().items()}
    model.load_checkpoint(release_file(tmp_path, "syncnet_256mouth.pth", {"state_dict": {"net": sync}}))
    assert all(torch.equal(nets.syncnet.state_dict()[k], v) for k, v in sync.items())
    assert all(torch.equal(nets.generator.state_dict()[k], v) for k, v in generator_before.items())


def test_old_file_without_batchnorm_counters(tmp_path):
    model = dinet64()
    state = {k: v for k, v in random_state(model.networks.generator, 7).items()
             if not k.endswith("num_batches_tracked")}
    assert len(state) == 332 - 46  # 46 BatchNorm layers
    model.load_checkpoint(release_file(tmp_path, "old.pth", official_release({"net_g": state})))
    assert int(model.networks.generator.state_dict()["source_in_conv.0.norm.num_batches_tracked"]) == 0


@pytest.mark.parametrize("damage", ["missing", "extra", "shape"])
def test_mismatches_raise_naming_the_key(damage, networks, tmp_path):
    state = random_state(networks.generator, 8)
    key = "adaAT.translation.0.weight"
    if damage == "missing":
        del state[key]
    elif damage == "extra":
        state[key := "adaAT.bogus.weight"] = torch.zeros(3)
    else:
        state[key] = torch.zeros(256, 256)
    path = release_file(tmp_path, "dinet_frame_64.pth", official_release({"net_g": state}))
    with pytest.raises(CheckpointError, match=re.escape(key)) as info:
        dinet64().load_checkpoint(path)
    assert "dinet_frame_64.pth" in str(info.value) and "networks.generator" in str(info.value)


@pytest.mark.parametrize("obj", [{"net_g": {}}, {"state_dict": {"model": {}}}, [1, 2],
                                 {"state_dict": {"net_g": {}, "net_extra": {}}}])
def test_unknown_layouts_raise(obj):
    with pytest.raises(CheckpointError, match="release.pth"):
        convert_dinet_checkpoint(obj, "release.pth")


# ---- equal outputs to the official classes ----------------------------------------------------------
# The fixture holds the official classes' float64 outputs on our seeded weights (make_fixture.py).
# Parity is asserted in float64 (REL64 of the scale: a CPU's summation order costs ~1e-16 there),
# and our float32 path against the same numbers within a float32 bound (docs/testing.md).
@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "official_outputs.npz", allow_pickle=False) as data:
        return dict(data)


def _run_networks(nets: dict, x: dict) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
    captured = {}

    def keep(module, inputs, output):
        captured["adaat_in"], captured["code"], captured["adaat"] = inputs[0], inputs[1], output

    handle = nets["generator"].adaAT.register_forward_hook(keep)
    with torch.no_grad():
        out = {"generator_out": nets["generator"](x["source_img"], x["ref_img"], x["audio_feature"]),
               "syncnet_out": nets["syncnet"](x["sync_mouths"], x["sync_audio"])}
        for name, key in (("frame_discriminator", "frame_images"), ("clip_discriminator", "clip_images")):
            maps, logits = nets[name](x[key])
            out[f"{name}_logits"], out[f"{name}_last_features"] = logits, maps[-1]
            for i, fmap in enumerate(maps):
                out[f"{name}_features{i}_channel_mean"] = fmap.mean(1)
    handle.remove()
    out["generator_code"] = captured["code"]
    out["generator_adaat"] = captured["adaat"][:, :8]
    return {k: v.numpy() for k, v in out.items()}, captured


@pytest.fixture(scope="module")
def ours(official):
    assert int(official["seed"]) == seeded.SEED and int(official["mouth"]) == seeded.MOUTH
    nets = seeded.seeded_networks(seeded.SEED)
    x = seeded.seeded_inputs(seeded.SEED)
    outputs32, _ = _run_networks(nets, x)
    nets64 = {name: copy.deepcopy(net).double() for name, net in nets.items()}
    outputs64, captured64 = _run_networks(nets64, {k: v.double() for k, v in x.items()})
    return {"nets": nets, "nets64": nets64, "outputs": outputs32, "outputs64": outputs64, "captured64": captured64}


def test_seeded_weights_are_the_fixture_weights(official, ours):
    for name, digest in seeded.weight_digests(ours["nets"]).items():
        assert digest == str(official[f"sha256_{name}"]), name  # the bytes, not a float sum


PREFIXES = ["generator", "syncnet", "frame_discriminator", "clip_discriminator"]


@pytest.mark.numerics
@pytest.mark.parametrize("prefix", PREFIXES)
def test_outputs_equal_official_code(prefix, official, ours):
    keys = [k for k in official if k.startswith(prefix + "_") and not k.startswith("sha256")]
    assert keys
    for key in keys:
        assert_close64(ours["outputs64"][key], official[key], key)
        assert np.std(official[key]) > 1e4 * REL64 * scale_of(official[key]), key  # not a constant


@pytest.mark.numerics
@pytest.mark.parametrize("prefix", PREFIXES)
def test_float32_outputs_are_within_float32_error_of_the_official_code(prefix, official, ours):
    """Bound: 8 x (conv/linear layers) x sqrt(largest fan-in) x eps32 x scale (tests/numerics.py). For
    the generator that is 5.1e4 eps32 of the scale; measured 1.9e3 (AVX-512), 2.4e3 (AVX2), 2.3e3 (SSE)."""
    net = ours["nets"][prefix]
    layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear))]
    fan_in = max(m.weight[0].numel() for m in layers)
    for key in (k for k in official if k.startswith(prefix + "_") and not k.startswith("sha256")):
        bound = fp32_bound(scale_of(official[key]), fan_in, depth=len(layers))
        assert_fp32_close(ours["outputs"][key], official[key], bound, key)


def _generator_fp32_bound(ours, official) -> float:
    layers = [m for m in ours["nets"]["generator"].modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv1d,
                                                                                torch.nn.Linear))]
    return fp32_bound(scale_of(official["generator_out"]), max(m.weight[0].numel() for m in layers),
                      depth=len(layers))


@pytest.mark.numerics
@pytest.mark.parametrize("damage", ["source channels swapped", "reference frames swapped", "a block skipped"])
def test_deliberate_breaks_miss_by_far_more_than_the_float32_bound(damage, official, ours, monkeypatch):
    x = seeded.seeded_inputs(seeded.SEED)
    generator = copy.deepcopy(ours["nets"]["generator"])
    if damage == "source channels swapped":
        x["source_img"] = x["source_img"][:, [2, 1, 0]]
    elif damage == "reference frames swapped":
        x["ref_img"] = torch.cat([x["ref_img"][:, 3:6], x["ref_img"][:, :3], x["ref_img"][:, 6:]], 1)
    else:
        generator.appearance_conv_list[0][1] = torch.nn.Identity()
    with torch.no_grad():
        out = generator(x["source_img"], x["ref_img"], x["audio_feature"]).numpy()
    assert max_abs_diff(out, official["generator_out"]) > 10 * _generator_fp32_bound(ours, official), damage


def test_generator_output_in_unit_range_and_not_saturated(ours):
    out = ours["outputs"]["generator_out"]
    assert out.min() >= 0 and out.max() <= 1 and 0.05 < out.std() < 0.45


def _adaat_variant(ours, **options) -> np.ndarray:
    adaat = ours["nets64"]["generator"].adaAT
    variant = AdaAT(256, 256, **options).double()
    variant.load_state_dict(adaat.state_dict())
    with torch.no_grad():
        return variant(ours["captured64"]["adaat_in"], ours["captured64"]["code"])[:, :8].numpy()


@pytest.mark.numerics
def test_adaat_quirk_is_needed_to_match(official, ours, monkeypatch):
    expected = official["generator_adaat"]
    assert_close64(_adaat_variant(ours), expected, "AdaAT")
    # break checks: the other grid conventions miss by > 1e-2, ~1e7 times the float64 tolerance
    assert max_abs_diff(_adaat_variant(ours, align_corners=True), expected) > 1e-2
    # the grid consistent with align_corners=False (pixel centres) is also a different operator
    monkeypatch.setattr(adaat_module, "coordinate_axis",
                        lambda n, like: torch.linspace(-1 + 1 / n, 1 - 1 / n, n, dtype=like.dtype))
    assert max_abs_diff(_adaat_variant(ours), expected) > 1e-2
    assert PI == 3.14159


def test_identity_adaat_does_not_reproduce_its_input():
    adaat = AdaAT(4, 4)
    for seq in (adaat.commn_linear, adaat.scale, adaat.rotation, adaat.translation):
        torch.nn.init.zeros_(seq[0].weight)
        torch.nn.init.zeros_(seq[0].bias)
    with torch.no_grad():  # scale 2*sigmoid(0) = 1, angle 0, shift 0: the identity transform
        adaat.scale[0].bias.fill_(0.0)
        feature = torch.ones(1, 4, 6, 5)
        out = adaat(feature, torch.zeros(1, 4))
    assert torch.allclose(out[0, 1:3, 1:5, 1:4], torch.ones(2, 4, 3))  # interior of inner channels
    assert torch.allclose(out[0, 1:3, 0, 1:4], torch.full((2, 3), 0.5))  # borders half attenuated
    assert torch.allclose(out[0, 0, 1:5, 1:4], torch.full((4, 3), 0.5))  # first channel: z border too


# ---- VGG19 perceptual loss ---------------------------------------------------------------------------
TORCHVISION_VGG19_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
                           (14, 256, 256), (16, 256, 256), (19, 256, 512), (21, 512, 512), (23, 512, 512),
                           (25, 512, 512), (28, 512, 512), (30, 512, 512), (32, 512, 512), (34, 512, 512)]


@pytest.fixture(scope="module")
def vgg() -> Vgg19Features:
    torch.manual_seed(3)
    return Vgg19Features()


def test_vgg_layout_is_torchvision_features(vgg):
    expected = []
    for index, cin, cout in TORCHVISION_VGG19_CONVS:
        expected += [(f"features.{index}.weight", (cout, cin, 3, 3)), (f"features.{index}.bias", (cout,))]
    assert [(k, tuple(v.shape)) for k, v in vgg.state_dict().items()] == expected
    count = sum(cin * cout * 9 + cout for _, cin, cout in TORCHVISION_VGG19_CONVS)
    assert count == 20_024_384 == sum(p.numel() for p in vgg.parameters())
    assert len(vgg.features) == 37 and not any(p.requires_grad for p in vgg.parameters())


def literal_perceptual_loss(vgg: Vgg19Features, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    layers = list(vgg.features)
    slices = [torch.nn.Sequential(*layers[a:b]) for a, b in ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))]

    def features(x):
        out, result = (x - mean) / std, []
        for s in slices:
            out = s(out)
            result.append(out)
        return result

    fake_half = F.avg_pool2d(fake, kernel_size=3, stride=2, padding=1, count_include_pad=False)
    real_half = F.interpolate(real, scale_factor=0.5, mode="bilinear")
    terms = []
    for a, b in ((fake, real), (fake_half, real_half)):
        terms += [(fa - fb).abs().mean() for fa, fb in zip(features(a), features(b))]
    assert len(terms) == 10
    return sum(terms) / 10


@pytest.mark.numerics
def test_perceptual_loss_matches_literal_computation(vgg):
    g = torch.Generator().manual_seed(11)
    fake = torch.rand(1, 3, 40, 32, generator=g).requires_grad_(True)
    real = torch.rand(1, 3, 40, 32, generator=g)
    loss = perceptual_loss(vgg, fake, real)
    with torch.no_grad():
        expected = literal_perceptual_loss(vgg, fake, real)
        swapped = literal_perceptual_loss(vgg, real, fake)  # which side is pooled matters
    assert torch.allclose(loss, expected, rtol=1e-6, atol=0), (loss, expected)
    assert not torch.allclose(loss, swapped, rtol=1e-4, atol=0)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())
    assert PERCEPTUAL_LOSS_WEIGHT == 10.0
    assert torch.equal(vgg.perceptual_loss(fake.detach(), real), perceptual_loss(vgg, fake.detach(), real))


def test_vgg_weights_file(tmp_path, vgg):
    assert VGG19_WEIGHTS.filename == "vgg19-dcbb9e9d.pth" and VGG19_WEIGHTS.sha256_prefix == "dcbb9e9d"
    with pytest.raises(CheckpointError, match="vgg19-dcbb9e9d.pth"):
        Vgg19Features.pretrained(tmp_path / "vgg19-dcbb9e9d.pth")
    state = {k: torch.randn(v.shape) for k, v in vgg.state_dict().items()}
    state.update({"classifier.0.weight": torch.zeros(4, 3), "classifier.0.bias": torch.zeros(4)})
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="SHA-256"):  # not the released bytes
        Vgg19Features.pretrained(path)
    loaded = Vgg19Features.pretrained(path, verify=False)
    assert torch.equal(loaded.features[34].weight, state["features.34.weight"])
    del state["features.34.bias"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="features.34.bias"):
        Vgg19Features.pretrained(path, verify=False)
