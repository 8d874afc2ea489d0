"""ParseNet (talkingface.face.parsenet) against VideoReTalking's vendored GPEN code at d32e8e5.

The fixture ``fixtures/parsenet/official_parsenet.npz`` is made by ``fixtures/parsenet/make_fixture.py`` from the
official files themselves (OpenCV 4.10.0; 5.1.0 gave the same bytes), on the seeded networks and images of
``fixtures/parsenet/seeded.py`` (their SHA-256 are checked here first).

- Layout: ``ParseNet()`` has the official release's 238 state-dict entries, keys and shapes in order (the listing
  the official class made) and 21,303,254 parameters; a raw state dict loads strictly through ``load_parsenet``
  byte for byte; a renamed key and a missing file are named (the latter with where to get it).
- Network (``numerics``): the release's layers on (2, 3, 32, 32) in float64 equal the official outputs to 1e-9 of
  their scale (measured: 0); in float32 within ``fp32_bound`` (depth 38 convolutions, largest fan-in 256 x 9;
  measured ~1e-6 of the scale, the bound 1.7e-3), and two breaks of our network (LeakyReLU slope 0.1, one body
  block skipped) miss that bound 68-76 times (1e8 times the float64 tolerance).
- Masks, on the stand-in network in float64 (the official logits' best two classes are at least 1.3e-8 apart, 7
  orders above float64 reordering): the face masks of GPEN's FaceEnhancement.process (sharp, with its border
  zeroed, equal; soft = mask_postprocess within one float32 rounding, measured equal) and VideoReTalking's mouth
  mask (equal) for a 203 x 171 box and a 1024 x 1024 one (cv2's 2x INTER_AREA shortcut). Breaks of our code: BGR
  not flipped changes 32% of the face mask and 152% of the mouth's pixel count, the class values shifted by one
  class 20% and 8%, blur sigma 10 instead of 11 moves the soft mask by 3.9e5 float32 roundings (5e6 for the other
  two); thresholding the resized mouth mask at 128 instead of the official uint8 cast changes 62% of it.
- The OpenCV stand-ins (when cv2 is installed): ``resize_linear_u8`` equals ``cv2.resize`` bit for bit on 60 sizes
  (up, down, 2x, same size, 1 pixel; 1, 3 and 4 channels), ``gaussian_blur`` equals ``cv2.GaussianBlur`` to 1e-14.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fixture_tools import load_module
from numerics import EPS32, assert_close64, fp32_bound, max_abs_diff, scale_of
from talkingface.errors import CheckpointError
from talkingface.face.parsenet import (PARSENET_LATEST, ParseNet, face_masks, gaussian_blur, load_parsenet,
                                       mouth_mask, resize_linear_u8)
from talkingface.face.parsenet import masks as masks_module

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "parsenet"
seeded = load_module(FIXTURES / "seeded.py", "parsenet_seeded")
COMMIT = "d32e8e58248255e2d243eeaf3cba545dbe505ca8"  # OpenTalker/video-retalking HEAD the fixture was made from
PARAMETERS = 21_303_254  # /work/shared/reference/videoretalking.md §2.4
STATE_KEYS = 238
DEPTH = 38  # convolutions on the longest path: encoder.0, 4 x 2 down, 10 x 2 body, 4 x 2 up, the output conv
FAN_IN = 256 * 9


@pytest.fixture(scope="module")
def official():
    data = np.load(FIXTURES / "official_parsenet.npz")
    assert str(data["official_commit"]) == COMMIT
    return data


@pytest.fixture(scope="module")
def release_net(official):
    net = seeded.seeded_parsenet("release")
    assert seeded.weight_digest(net) == str(official["sha256_release"]), "the seeded release weights changed"
    return net


@pytest.fixture(scope="module")
def standin64(official):
    net = seeded.seeded_parsenet("standin")
    assert seeded.weight_digest(net) == str(official["sha256_standin"]), "the seeded stand-in weights changed"
    return net.double()


# ---- layout and loading ------------------------------------------------------------------------------------------
def test_release_layout_parameters_and_strict_loading(official, release_net, tmp_path, monkeypatch):
    with torch.device("meta"):
        net = ParseNet()
    layout = [f"{k} {tuple(v.shape)}" for k, v in net.state_dict().items()]
    assert layout == list(official["layout"])  # keys and shapes, in order, as the official class lists them
    assert len(layout) == STATE_KEYS
    assert sum(p.numel() for p in net.parameters()) == PARAMETERS == int(official["parameters"])

    state = release_net.state_dict()  # a raw state dict, as GPEN saves ParseNet-latest.pth
    torch.save(state, tmp_path / "ParseNet-latest.pth")
    loaded = load_parsenet(tmp_path / "ParseNet-latest.pth")
    assert not loaded.training
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())

    renamed = {"encoder.0.conv.weight": state["encoder.0.conv2d.weight"]}  # a key spelt otherwise (the rest absent)
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointError, match=r"renamed\.pth does not match ParseNet: missing keys \(238\).*"
                                              r"unexpected keys \(1\): encoder\.0\.conv\.weight"):
        load_parsenet(tmp_path / "renamed.pth")

    with pytest.raises(CheckpointError) as missing:
        load_parsenet(tmp_path / "absent.pth")
    assert "ParseNet-latest.pth" in str(missing.value) and str(tmp_path / "absent.pth") in str(missing.value)
    assert PARSENET_LATEST.source in str(missing.value) and "vinthony/video-retalking" in PARSENET_LATEST.source
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # the default path, checkpoints/ParseNet-latest.pth, absent here
    with pytest.raises(CheckpointError, match=r"ParseNet-latest\.pth not found at checkpoints/ParseNet-latest\.pth: "
                                              r"get it from GitHub release v0\.0\.1 of vinthony/video-retalking"):
        load_parsenet()
    assert PARSENET_LATEST.licence.startswith("not stated")


# ---- the network -----------------------------------------------------------------------------------------------------
@pytest.mark.numerics
def test_release_network_float64_equals_official(official, release_net):
    x = seeded.release_input()
    assert seeded.array_digest(x.numpy()) == str(official["release_input_sha256"])
    with torch.no_grad():
        out_mask, out_img = copy.deepcopy(release_net).double()(x.double())
    assert_close64(out_mask.numpy(), official["release_mask"], "parsing logits")
    assert_close64(out_img.numpy(), official["release_img"], "image")


@pytest.mark.numerics
def test_release_network_float32_bound_and_breaks(official, release_net):
    """Measured on this AVX-512 EPYC: float32 vs the official float64, 2.4e-4 (logits, scale 256) and 2.4e-4
    (image, 192), ~1e-6 of the scale, against bounds of 0.45 and 0.33 (1.7e-3 of the scale). Breaks: LeakyReLU slope
    0.1 instead of 0.2 misses by 73x / 68x the bound, body block 5 skipped by 76x / 76x."""
    x = seeded.release_input()
    expected = {"logits": official["release_mask"], "image": official["release_img"]}
    bounds = {name: fp32_bound(scale_of(value), FAN_IN, DEPTH) for name, value in expected.items()}

    def errors(net: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            outputs = dict(zip(expected, net(x)))
        return {name: max_abs_diff(outputs[name], expected[name]) for name in expected}

    measured = errors(release_net)
    for name in expected:
        assert measured[name] <= bounds[name], (name, measured[name], bounds[name])

    slope = copy.deepcopy(release_net)
    for module in slope.modules():
        if isinstance(module, nn.LeakyReLU):
            module.negative_slope = 0.1
    skipped = copy.deepcopy(release_net)
    skipped.body[5] = nn.Identity()
    for broken in (slope, skipped):
        missed = errors(broken)
        assert all(missed[name] > 10 * bounds[name] for name in expected), (missed, bounds)


# ---- the masks -------------------------------------------------------------------------------------------------------
def _face(official):
    image = seeded.face_image()
    assert seeded.array_digest(image) == str(official["face_image_sha256"])
    return image


def _soft_error(soft: np.ndarray, official) -> float:
    stride = seeded.FACE_SOFT_STRIDE
    return max_abs_diff(soft[::stride, ::stride], official["face_soft"])


def test_face_masks_equal_official(official, standin64):
    """GPEN's face masks: the sharp mask (classes skin..brows, mouth, lips; border zeroed) equal, the soft one
    (mask_postprocess) within one float32 rounding of 1 (measured: equal)."""
    assert tuple(official["face_mm"]) == masks_module.FACE_MASK_VALUES
    sharp, soft = face_masks(standin64, _face(official))
    assert sharp.dtype == np.float64 and soft.dtype == np.float32 and sharp.shape == soft.shape == (512, 512)
    np.testing.assert_array_equal(sharp, official["face_sharp"])
    assert 0.2 < sharp.mean() < 0.8 and not sharp[:20].any() and not sharp[:, -20:].any()  # a real mask, border 0
    assert _soft_error(soft, official) <= EPS32


def test_face_mask_breaks(official, standin64, monkeypatch):
    """Each break of our code moves the soft mask by > 1e4 x its bound (measured 5.7e6, 5.3e6, 3.9e5) and the first
    two change > 10% of the sharp mask (measured 32%, 20%)."""
    face = _face(official)

    def missed() -> tuple[float, float]:
        sharp, soft = face_masks(standin64, face)
        return float(np.mean(sharp != official["face_sharp"])), _soft_error(soft, official)

    with monkeypatch.context() as patch:  # BGR not flipped to RGB
        patch.setattr(masks_module, "_as_rgb", lambda images, channels: images)
        changed, soft_error = missed()
        assert changed > 0.1 and soft_error > 1e4 * EPS32, (changed, soft_error)
    with monkeypatch.context() as patch:  # every class's value moved to the next class
        patch.setattr(masks_module, "FACE_MASK_VALUES", (0, *masks_module.FACE_MASK_VALUES[:-1]))
        changed, soft_error = missed()
        assert changed > 0.1 and soft_error > 1e4 * EPS32, (changed, soft_error)
    with monkeypatch.context() as patch:  # the blur's sigma
        patch.setattr(masks_module, "BLUR_SIGMA", 10.0)
        changed, soft_error = missed()
        assert changed == 0 and soft_error > 1e4 * EPS32, (changed, soft_error)


def _crop(official, case):
    frame = seeded.mouth_frame(case)
    assert seeded.array_digest(frame) == str(official[f"{case}_frame_sha256"])
    _, _, y1, y2, x1, x2 = seeded.MOUTH_CASES[case]
    return frame[y1:y2, x1:x2]


@pytest.mark.parametrize("case", list(seeded.MOUTH_CASES))
def test_mouth_mask_equals_official(official, standin64, case):
    """VideoReTalking's mouth mask (classes 10, 11, 12; resized back to the box; 1 only where exactly 255)."""
    assert tuple(official["mouth_mm"]) == masks_module.MOUTH_MASK_VALUES
    crop = _crop(official, case)
    mask = mouth_mask(standin64, crop)
    assert mask.dtype == np.uint8 and mask.shape == crop.shape[:2]
    np.testing.assert_array_equal(mask, official[f"{case}_mouth"])
    assert mask.sum() > 500  # a real mask


def test_mouth_mask_breaks(official, standin64, monkeypatch):
    """Class values shifted by one class, or BGR not flipped: > 5% of the mouth's pixel count changes (measured 8%
    and 152% of 4,622); the uint8 cast of inference.py matters (thresholding the resized mask at 128 would keep its
    bilinear edge: measured 62%)."""
    case = "box203x171"
    crop, expected = _crop(official, case), official[f"{case}_mouth"]
    with monkeypatch.context() as patch:
        patch.setattr(masks_module, "MOUTH_MASK_VALUES", (0, *masks_module.MOUTH_MASK_VALUES[:-1]))
        shifted = np.sum(mouth_mask(standin64, crop) != expected)
    with monkeypatch.context() as patch:
        patch.setattr(masks_module, "_as_rgb", lambda images, channels: images)
        unflipped = np.sum(mouth_mask(standin64, crop) != expected)
    parsed = masks_module.parse_mask(standin64, crop, masks_module.MOUTH_MASK_VALUES)[0]
    resized = resize_linear_u8(parsed, crop.shape[:2])
    halfway = np.sum((resized >= 128) != expected)
    print(f"mouth pixels {expected.sum()}, changed by the breaks: shifted classes {shifted}, BGR {unflipped}, "
          f"threshold 128 {halfway}")
    assert shifted > 0.05 * expected.sum() and unflipped > 0.05 * expected.sum() and halfway > 0.02 * expected.sum()


# ---- the OpenCV stand-ins -------------------------------------------------------------------------------------------
def test_resize_and_blur_equal_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(5)
    sizes = [((1024, 1024), (512, 512)), ((512, 512), (1024, 1024)), ((203, 171), (512, 512)),
             ((512, 512), (203, 171)), ((512, 512), (512, 512)), ((1, 1), (512, 512)), ((1, 7), (3, 2)),
             ((720, 1280), (512, 512)), ((2, 2), (1, 1)), ((100, 60), (50, 30))]
    sizes += [(tuple(rng.integers(1, 600, 2)), tuple(rng.integers(1, 600, 2))) for _ in range(50)]
    for i, (src, dst) in enumerate(sizes):
        channels = (0, 1, 3, 4)[i % 4]
        image = rng.integers(0, 256, (*src, channels) if channels else src, dtype=np.uint8)
        if i % 5 == 0:
            image = (image > 127).astype(np.uint8) * 255  # masks, as the mouth mask is resized
        expected = cv2.resize(image, (int(dst[1]), int(dst[0])))
        np.testing.assert_array_equal(resize_linear_u8(image, dst), expected.reshape(*dst, *image.shape[2:]),
                                      err_msg=f"{src} -> {dst}, {channels} channels")
    for shape in ((512, 512), (40, 70)):  # 40 x 70: the 101-tap kernel reflects more than once
        mask = (rng.random(shape) > 0.5).astype(np.float64)
        assert max_abs_diff(gaussian_blur(mask, 101, 11.0), cv2.GaussianBlur(mask, (101, 101), 11)) < 1e-14

