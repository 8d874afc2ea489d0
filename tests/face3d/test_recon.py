"""Deep3DFaceRecon's coefficient regressor (talkingface.face3d.ReconNet) and its align_img preprocessing.

- Layout: the state dict's keys and shapes, in order, equal a listing built here from torchvision's ResNet-50
  naming rules plus ``final_layers.0..6`` (80/64/80/3/27/2/1 1x1 convs with bias), as Deep3DFaceRecon's
  ``ReconNetWrapper('resnet50', use_last_fc=False)`` (sicxu/Deep3DFaceRecon_pytorch ``models/networks.py``); 332
  keys and 24,034,625 parameters as /work/shared/reference/videoretalking.md §2.4 counts; final layers zero.
- Forward: against the official ReconNetWrapper's float64 outputs in ``test_official_parity.py`` (the fixture is
  made by the original code).
- Loading: both official file layouts (Deep3DFaceRecon's ``{'net_recon', 'opt_00', 'sched_00'}`` and a
  ``module.``-prefixed ``net_recon``) load strictly and byte-exactly; a renamed and a misshapen key are named in
  the CheckpointError with the file; a missing ``net_recon`` is named.
- align_img: closed forms. A face whose 5 points are an exact scaled/shifted copy of the template lands on
  102 x template + 112 (plus the documented half-pixel of the size truncation); trans_params = (w0, h0, 102 / s0,
  t0); 68 points give the same fit as their 5; landmarks round-trip through trans_params; the crop is 224 x 224 and
  a bright dot lands where PIL's resize puts its centre (y up in the landmarks; the unflipped convention misses by
  tens of pixels); the crop corner truncates toward zero, outside the image is black; the mask is cropped alike.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fixture_tools import load_module
from numerics import state_digest
from talkingface.checkpoint import read_checkpoint
from talkingface.errors import CheckpointError
from talkingface.face3d import (COEFF_DIM, ReconNet, align_img, crop_box, extract_5p, image_to_tensor,
                                landmarks_from_crop, landmarks_to_crop, landmarks_y_up, pos_fit, split_coeffs)

face3d_seeded = load_module(Path(__file__).resolve().parent / "fixtures" / "seeded.py", "face3d_seeded")
PARAMETERS = 24_034_625  # videoretalking.md §2.4, counted on the official class
STATE_KEYS = 332
WIDTHS = (80, 64, 80, 3, 27, 2, 1)  # id, exp, tex, angle, gamma, tx/ty, tz
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (planes, blocks, stride)
BN_EPS = 1e-5


# ---- the official layout, written out from torchvision's naming rules ------------------------------------------
def official_layout() -> list[tuple[str, tuple[int, ...]]]:
    out: list[tuple[str, tuple[int, ...]]] = []

    def conv(name, cout, cin, k):
        out.append((f"{name}.weight", (cout, cin, k, k)))

    def bn(name, c):
        out.extend([(f"{name}.weight", (c,)), (f"{name}.bias", (c,)), (f"{name}.running_mean", (c,)),
                    (f"{name}.running_var", (c,)), (f"{name}.num_batches_tracked", ())])

    conv("backbone.conv1", 64, 3, 7)
    bn("backbone.bn1", 64)
    inplanes = 64
    for stage, (planes, blocks, _) in enumerate(STAGES, start=1):
        for i in range(blocks):
            p = f"backbone.layer{stage}.{i}"
            conv(f"{p}.conv1", planes, inplanes, 1)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3)
            bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", 4 * planes, planes, 1)
            bn(f"{p}.bn3", 4 * planes)
            if i == 0:
                conv(f"{p}.downsample.0", 4 * planes, inplanes, 1)
                bn(f"{p}.downsample.1", 4 * planes)
            inplanes = 4 * planes
    for j, width in enumerate(WIDTHS):
        out.extend([(f"final_layers.{j}.weight", (width, 2048, 1, 1)), (f"final_layers.{j}.bias", (width,))])
    return out


def test_state_dict_layout_equals_the_official_one():
    net = ReconNet()
    state = net.state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == official_layout()
    assert len(state) == STATE_KEYS
    assert sum(p.numel() for p in net.parameters()) == PARAMETERS
    assert not any(k.startswith("backbone.fc") for k in state)
    assert all(torch.count_nonzero(v) == 0 for k, v in state.items() if k.startswith("final_layers"))
    assert all(m.eps == BN_EPS for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert COEFF_DIM == sum(WIDTHS) == 257


# ---- seeded weights (the forward against the official network: test_official_parity.py) ------------------------
@pytest.fixture(scope="module")
def seeded() -> ReconNet:
    return face3d_seeded.seeded_recon()


def test_split_coeffs_and_image_to_tensor():
    coeffs = torch.arange(2 * 257, dtype=torch.float64).reshape(2, 257)
    parts = split_coeffs(coeffs)
    assert [(k, v.shape[1]) for k, v in parts.items()] == [("id", 80), ("exp", 64), ("tex", 80), ("angle", 3),
                                                          ("gamma", 27), ("trans", 3)]
    assert torch.equal(torch.cat(list(parts.values()), dim=1), coeffs)
    image = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    tensor = image_to_tensor(image)
    assert tensor.shape == (1, 3, 5, 4) and tensor.dtype == torch.float32
    # the official torch.tensor(np.array(im) / 255., dtype=torch.float32).permute(2, 0, 1)
    assert torch.equal(tensor[0], torch.tensor(image / 255., dtype=torch.float32).permute(2, 0, 1))
    with pytest.raises(ValueError, match="257"):
        split_coeffs(coeffs[:, :256])


# ---- loading the official files ---------------------------------------------------------------------------------
def test_loads_both_official_layouts_strictly(tmp_path, seeded):
    state = seeded.state_dict()
    digest = state_digest(state)
    optimizer = torch.optim.Adam(seeded.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.2)
    deep3d = tmp_path / "epoch_20.pth"  # Deep3DFaceRecon's save_networks: net_recon + optimiser + scheduler
    torch.save({"net_recon": state, "opt_00": optimizer.state_dict(), "sched_00": scheduler.state_dict()}, deep3d)
    assert set(read_checkpoint(deep3d)) == {"net_recon", "opt_00", "sched_00"}  # weights_only reads it
    net = ReconNet().train().load_checkpoint(deep3d)
    assert not net.training and state_digest(net.state_dict()) == digest

    videoretalking = tmp_path / "face3d_pretrain_epoch_20.pth"  # with a DataParallel prefix
    torch.save({"net_recon": {f"module.{k}": v for k, v in state.items()}}, videoretalking)
    assert state_digest(ReconNet.from_checkpoint(videoretalking).state_dict()) == digest

    bad = dict(state)
    bad["final_layers.7.bias"] = bad.pop("final_layers.6.bias")
    bad["final_layers.0.weight"] = torch.zeros(81, 2048, 1, 1)
    broken = tmp_path / "broken.pth"
    torch.save({"net_recon": bad}, broken)
    with pytest.raises(CheckpointError) as info:
        ReconNet().load_checkpoint(broken)
    message = str(info.value)
    assert str(broken) in message
    for key in ("final_layers.6.bias", "final_layers.7.bias", "final_layers.0.weight"):
        assert key in message, (key, message)

    other = tmp_path / "other.pth"
    torch.save({"state_dict": {"weight": [1, 2]}, "epoch": 20}, other)
    with pytest.raises(CheckpointError, match=f"{other}: no 'net_recon' entry"):
        ReconNet().load_checkpoint(other)
    with pytest.raises(CheckpointError, match="not found"):
        ReconNet().load_checkpoint(tmp_path / "absent.pth")


class _SchedulerConfig:
    """Stands for an object in an optimiser/scheduler entry that ``weights_only`` refuses."""


def test_a_file_weights_only_refuses_is_read_without_running_code(tmp_path):
    path = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": {}, "sched_00": _SchedulerConfig()}, path)
    with pytest.raises(CheckpointError, match="cannot be read as a weights-only"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"missing keys \(332\)"):  # read, then refused as incomplete
        ReconNet().load_checkpoint(path)


# ---- align_img -------------------------------------------------------------------------------------------------
# five template points (eye, eye, nose, mouth, mouth) in face-model units, y up, as load_lm3d returns them
TEMPLATE = np.array([[-0.31, 0.29, 0.52], [0.31, 0.28, 0.50], [0.01, -0.02, 0.78], [-0.25, -0.35, 0.55],
                     [0.24, -0.36, 0.54]], dtype=np.float32)


def test_extract_5p_takes_the_documented_points():
    lm = np.random.default_rng(1).uniform(0, 200, (68, 2)).astype(np.float32)
    one_based = [31, 37, 40, 43, 46, 49, 55]  # Deep3DFaceRecon's util/preprocess.py, order eye, eye, nose, mouth
    p = [i - 1 for i in one_based]
    expected = np.stack([(lm[p[1]] + lm[p[2]]) / np.float32(2), (lm[p[3]] + lm[p[4]]) / np.float32(2), lm[p[0]],
                         lm[p[5]], lm[p[6]]])
    got = extract_5p(lm)
    assert got.dtype == np.float32 and np.array_equal(got, expected)


def test_pos_fit_recovers_an_affine_camera():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 5))
    camera = rng.normal(size=(2, 4)) * 50
    xp = camera[:, :3] @ x + camera[:, 3:]
    t, s = pos_fit(xp, x)
    assert np.allclose(t, camera[:, 3], rtol=0, atol=1e-10 * 50)
    assert math.isclose(s, (np.linalg.norm(camera[0, :3]) + np.linalg.norm(camera[1, :3])) / 2, rel_tol=1e-12)


def template_face(scale: float, shift: tuple[float, float]) -> np.ndarray:
    return (TEMPLATE[:, :2].astype(np.float64) * scale + np.array(shift)).astype(np.float32)


def test_template_face_is_mapped_onto_the_template():
    w0, h0, s0, t0 = 256, 240, 150.0, (130.0, 120.0)
    image = np.random.default_rng(3).integers(0, 256, (h0, w0, 3), dtype=np.uint8)
    lm5 = template_face(s0, t0)
    trans_params, crop, lm_new, mask = align_img(image, lm5, TEMPLATE)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8 and mask is None
    fitted = lm5.astype(np.float64)  # the float32 landmarks, exactly as given
    s_fit = pos_fit(fitted.T, TEMPLATE.T)[1]
    assert math.isclose(s_fit, s0, rel_tol=1e-6)  # float32 landmarks: s0 up to their rounding
    assert trans_params.dtype == np.float64 and trans_params.shape == (5,)
    assert trans_params[:2].tolist() == [w0, h0]
    assert math.isclose(trans_params[2], 102.0 / s_fit, rel_tol=1e-12)
    assert np.allclose(trans_params[3:], t0, rtol=0, atol=1e-3)
    # 102 x template + 112, plus half the fraction the size truncation drops: (w0 s - trunc(w0 s)) / 2
    s = trans_params[2]
    half = np.array([(w0 * s - int(w0 * s)) / 2, (h0 * s - int(h0 * s)) / 2])
    expected = (fitted - trans_params[3:]) * s + 112 + half
    assert np.allclose(lm_new, expected, rtol=0, atol=1e-9)
    assert np.allclose(lm_new, TEMPLATE[:, :2] * 102 + 112 + half, rtol=0, atol=2e-3)  # float32 landmarks
    # 68 points: the same fit as their five, every point mapped; and the round trip through trans_params
    lm68 = np.random.default_rng(4).uniform(0, 200, (68, 2)).astype(np.float32)
    lm68[[36, 39]] = lm5[0] + np.array([[-9, 1], [9, -1]], dtype=np.float32)
    lm68[[42, 45]] = lm5[1] + np.array([[-8, 2], [8, -2]], dtype=np.float32)
    lm68[[30, 48, 54]] = lm5[2:]
    params68, crop68, lm68_new, _ = align_img(image, lm68, TEMPLATE)
    params5, crop5, _, _ = align_img(image, extract_5p(lm68), TEMPLATE)
    assert np.array_equal(params68, params5) and np.array_equal(crop68, crop5)
    assert np.allclose(params68, trans_params, rtol=1e-5, atol=1e-3)
    assert lm68_new.shape == (68, 2) and np.array_equal(lm68_new, landmarks_to_crop(lm68, params68))
    assert np.allclose(landmarks_from_crop(lm68_new, params68), lm68, rtol=0, atol=1e-10 * 256)


def test_crop_puts_a_dot_where_pil_resize_puts_it():
    """A 5 x 5 white square centred on the nose tip (image row v, landmark y = H - 1 - v) lands, within a quarter
    pixel, at PIL's mapping of its centre: (v + 0.5) h / h0 - 0.5 - up. The y-down landmark convention misses by tens
    of pixels. Pixel centres of the resize: PIL maps output centre j + 0.5 to input (j + 0.5) w0 / w."""
    w0, h0 = 200, 180
    lm5 = template_face(120.0, (96.0, 130.0))  # y up
    lm5_rows = landmarks_y_up(lm5, h0)  # image rows
    u, v = int(round(float(lm5_rows[2, 0]))), int(round(float(lm5_rows[2, 1])))
    image = np.zeros((h0, w0, 3), dtype=np.uint8)
    image[v - 2:v + 3, u - 2:u + 3] = 255
    trans_params, crop, _, mask = align_img(image, lm5, TEMPLATE, mask=image[..., 0])
    s = trans_params[2]
    w, h, left, up = crop_box((w0, h0), trans_params[3:], s)
    weights = crop[..., 0].astype(np.float64)
    rows, cols = np.mgrid[:224, :224]
    centroid = np.array([(weights * cols).sum(), (weights * rows).sum()]) / weights.sum()
    expected = np.array([(u + 0.5) * w / w0 - 0.5 - left, (v + 0.5) * h / h0 - 0.5 - up])
    assert np.abs(centroid - expected).max() < 0.25, (centroid, expected)
    assert np.array_equal(mask, crop[..., 0])  # the mask goes through the same resize and crop
    _, crop_down, _, _ = align_img(image, lm5_rows, TEMPLATE)  # rows given as y: the wrong convention
    moved = crop_down[..., 0].astype(np.float64)
    if moved.sum() > 0:
        other = np.array([(moved * cols).sum(), (moved * rows).sum()]) / moved.sum()
        assert np.abs(other - expected).max() > 10
    # numpy and PIL inputs crop alike
    from PIL import Image
    assert np.array_equal(align_img(Image.fromarray(image), lm5, TEMPLATE)[1], crop)


def test_crop_corner_truncates_toward_zero_and_outside_is_black():
    w0, h0 = 160, 160
    lm5 = template_face(110.0, (40.3, 90.0))  # face near the left border: the crop starts left of the image
    image = np.full((h0, w0, 3), 200, dtype=np.uint8)
    trans_params, crop, _, _ = align_img(image, lm5, TEMPLATE)
    s, t = trans_params[2], trans_params[3:]
    w, h, left, up = crop_box((w0, h0), t, s)
    exact = w / 2 - 112 + (t[0] - w0 / 2) * s
    assert exact < 0 and exact != math.floor(exact)
    assert left == math.trunc(exact) == math.ceil(exact) and (w, h) == (int(w0 * s), int(h0 * s))
    rows, cols = np.mgrid[:224, :224]
    inside = (rows + up >= 0) & (rows + up < h) & (cols + left >= 0) & (cols + left < w)
    assert left < 0 and (~inside).any() and inside.any()
    assert (crop[~inside] == 0).all() and (crop[inside] > 150).all()
