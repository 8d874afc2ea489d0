"""S3FD (syncnet_python detectors/s3fd): layout, priors, decode/NMS, and detect() against a float64 reference."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from talkingface.errors import CheckpointError, DataError
from talkingface.face.s3fd import (SFD_FACE, S3FD, S3FDDetector, detect_one, feature_map_sizes, nms_numpy,
                                   prior_boxes, resize_linear)

from numerics import assert_fp32_close, fp32_bound, max_abs_diff

# (key prefix, in, out, kernel) of every conv in sfd_face.pth, written out from nets.py independently.
CONVS = [("vgg.0", 3, 64, 3), ("vgg.2", 64, 64, 3), ("vgg.5", 64, 128, 3), ("vgg.7", 128, 128, 3),
         ("vgg.10", 128, 256, 3), ("vgg.12", 256, 256, 3), ("vgg.14", 256, 256, 3),
         ("vgg.17", 256, 512, 3), ("vgg.19", 512, 512, 3), ("vgg.21", 512, 512, 3),
         ("vgg.24", 512, 512, 3), ("vgg.26", 512, 512, 3), ("vgg.28", 512, 512, 3),
         ("vgg.31", 512, 1024, 3), ("vgg.33", 1024, 1024, 1),
         ("extras.0", 1024, 256, 1), ("extras.1", 256, 512, 3), ("extras.2", 512, 128, 1), ("extras.3", 128, 256, 3)]
SOURCES = [256, 512, 512, 1024, 512, 256]
CONVS += [(f"loc.{i}", c, 4, 3) for i, c in enumerate(SOURCES)]
CONVS += [(f"conf.{i}", c, 4 if i == 0 else 2, 3) for i, c in enumerate(SOURCES)]
NORMS = [("L2Norm3_3", 256), ("L2Norm4_3", 512), ("L2Norm5_3", 512)]
# 19 trunk/extra convs + 12 heads = 31 convs (62 tensors) + 3 L2Norm weights = 65 entries, no buffers.
EXPECTED_PARAMETERS = 22_459_110  # = 89,836,440 bytes of float32, the bulk of the 89,844,381-byte release


def test_state_dict_keys_and_parameter_count_match_the_release_layout():
    shapes = {}
    for name, cin, cout, k in CONVS:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, k, k), (cout,)
    for name, channels in NORMS:
        shapes[f"{name}.weight"] = (channels,)
    assert sum(math.prod(s) for s in shapes.values()) == EXPECTED_PARAMETERS
    state = S3FD().state_dict()
    assert len(state) == 65
    assert {k: tuple(v.shape) for k, v in state.items()} == shapes
    assert sum(p.numel() for p in S3FD().parameters()) == EXPECTED_PARAMETERS
    net = S3FD()
    assert [float(getattr(net, n).weight.detach()[0]) for n, _ in NORMS] == [10.0, 8.0, 5.0]


@pytest.mark.parametrize("hw", [(32, 32), (40, 32), (63, 29)])
def test_feature_map_sizes_and_priors_match_a_literal_computation(hw):
    with torch.no_grad():
        loc, conf, sizes = S3FD()(torch.zeros(1, 3, *hw))
    assert sizes == feature_map_sizes(*hw)
    assert loc.shape == (1, sum(h * w for h, w in sizes), 4) and conf.shape[-1] == 2
    imh, imw = hw
    rows = []
    for k, (fh, fw) in enumerate(sizes):
        step, min_size = [4, 8, 16, 32, 64, 128][k], [16, 32, 64, 128, 256, 512][k]
        for i in range(fh):
            for j in range(fw):
                rows.append([(j + 0.5) / (imw / step), (i + 0.5) / (imh / step), min_size / imw, min_size / imh])
    priors = prior_boxes(hw, sizes)
    assert priors.dtype == torch.float32
    assert torch.equal(priors, torch.tensor(rows, dtype=torch.float32))


def test_feature_map_sizes_by_hand():
    # 160 -> conv3_3 40, pool3 20, pool4 10, pool5 5, conv6_2 3, conv7_2 2; 45 -> 11, ceil 6, 3, 1, 1, 1
    assert feature_map_sizes(160, 45) == [(40, 11), (20, 6), (10, 3), (5, 1), (3, 1), (2, 1)]
    assert prior_boxes((64, 48), [(1, 1)] * 6)[0].tolist() == pytest.approx([2 / 48, 2 / 64, 16 / 48, 16 / 64])


def test_decode_with_variances_and_nms_keep_one_of_the_duplicates():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 4 + [[0.1, 0.1, 0.1, 0.1], [0.9, 0.9, 0.1, 0.1]])
    loc = torch.zeros(6, 4)
    loc[0] = torch.tensor([1.0, -1.0, math.log(2) / 0.2, math.log(2) / 0.2])  # centre +-0.1*0.2, size x2
    loc[1] = loc[0] + torch.tensor([0.2, 0.0, 0.0, 0.0])                       # near-duplicates
    loc[2] = loc[0] + torch.tensor([0.0, 0.3, 0.0, 0.0])
    logits = torch.tensor([[0.0, 6.0], [0.0, 5.0], [0.0, 4.0], [0.0, 3.0], [0.0, 1.0], [0.0, -4.0]])
    out = detect_one(loc, logits, priors)
    # prior 0: centre (0.52, 0.48), size 0.4 -> (0.32, 0.28, 0.72, 0.68); prior 3 (IoU with it 0.25 <= 0.3) stays,
    # priors 1, 2 are suppressed, prior 5 has score sigmoid(-4) = 0.018 < 0.05.
    expected = torch.tensor([[1 / (1 + math.exp(-6)), 0.32, 0.28, 0.72, 0.68],
                             [1 / (1 + math.exp(-3)), 0.4, 0.4, 0.6, 0.6],
                             [1 / (1 + math.exp(-1)), 0.05, 0.05, 0.15, 0.15]])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_final_nms_keeps_iou_up_to_point_one_and_is_numpy2_clean():
    dets = np.array([[0, 0, 10, 10, 0.95], [1, 0, 11, 10, 0.99], [0, 0, 10, 10, 0.5],
                     [20, 0, 30, 10, 0.9], [0, 20, 10, 30, 0.93], [8, 20, 18, 30, 0.92]], dtype=np.float64)
    # [5] vs [4]: inter 2x10=20, union 180 -> IoU 0.111 > 0.1 -> dropped; [3] disjoint -> kept.
    keep = nms_numpy(dets, 0.1)
    assert keep.dtype == np.int64 and keep.tolist() == [1, 4, 3]
    dets[5, 0] = 9.0  # inter 10/190 = 0.0526 -> kept
    assert nms_numpy(dets, 0.1).tolist() == [1, 4, 5, 3]
    assert nms_numpy(np.empty((0, 5)), 0.1).shape == (0,)


# ---- an independent float64 reference of S3FD.detect_faces ----------------------------------------------------

def _cv2_linear_resize(img: np.ndarray, s: float) -> np.ndarray:
    """cv2 INTER_LINEAR by formula: size cvRound(n*s), src=(d+.5)/s-.5, border clamp, uint8 round half-up."""
    def axis(n_in):
        n_out = round(n_in * s)
        src = (np.arange(n_out) + 0.5) / s - 0.5
        i0 = np.floor(src).astype(int)
        frac = src - i0
        frac[i0 < 0], i0[i0 < 0] = 0.0, 0
        frac[i0 >= n_in - 1], i0[i0 >= n_in - 1] = 0.0, n_in - 1
        return i0, np.minimum(i0 + 1, n_in - 1), frac
    y0, y1, fy = axis(img.shape[0])
    x0, x1, fx = axis(img.shape[1])
    a = img.astype(np.float64)
    top = a[y0][:, x0] * (1 - fx)[None, :, None] + a[y0][:, x1] * fx[None, :, None]
    bot = a[y1][:, x0] * (1 - fx)[None, :, None] + a[y1][:, x1] * fx[None, :, None]
    return np.floor(top * (1 - fy)[:, None, None] + bot * fy[:, None, None] + 0.5)


def _reference_forward(state: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
    w = {k: v.double() for k, v in state.items()}

    def conv(name, t, stride=1, pad=1, dil=1):
        return F.conv2d(t, w[f"{name}.weight"], w[f"{name}.bias"], stride, pad, dil)

    def l2(name, t):
        return w[f"{name}.weight"].view(1, -1, 1, 1) * t / (t.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)

    t, sources = x, []
    for block, (names, norm) in enumerate([(["vgg.0", "vgg.2"], None), (["vgg.5", "vgg.7"], None),
                                           (["vgg.10", "vgg.12", "vgg.14"], "L2Norm3_3"),
                                           (["vgg.17", "vgg.19", "vgg.21"], "L2Norm4_3"),
                                           (["vgg.24", "vgg.26", "vgg.28"], "L2Norm5_3")]):
        if block:
            t = F.max_pool2d(t, 2, 2, ceil_mode=block == 3)
        for name in names:
            t = F.relu(conv(name, t))
        if norm:
            sources.append(l2(norm, t))
    t = F.relu(conv("vgg.31", F.max_pool2d(t, 2, 2), pad=6, dil=6))
    t = F.relu(conv("vgg.33", t, pad=0))
    sources.append(t)
    t = F.relu(conv("extras.1", F.relu(conv("extras.0", t, pad=0)), stride=2))
    sources.append(t)
    t = F.relu(conv("extras.3", F.relu(conv("extras.2", t, pad=0)), stride=2))
    sources.append(t)
    locs, confs, sizes = [], [], []
    for i, src in enumerate(sources):
        c = conv(f"conf.{i}", src)
        if i == 0:
            c = torch.cat([c[:, :3].amax(1, keepdim=True), c[:, 3:]], 1)
        locs.append(conv(f"loc.{i}", src)[0].permute(1, 2, 0).reshape(-1, 4))
        confs.append(c[0].permute(1, 2, 0).reshape(-1, 2))
        sizes.append(tuple(src.shape[2:]))
    return torch.cat(locs), torch.cat(confs), sizes


def _greedy_nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    order, keep = list(np.argsort(-scores, kind="stable")), []
    while order:
        i = order.pop(0)
        keep.append(i)
        def iou(j):
            iw = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
            ih = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
            area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
            return iw * ih / (area(boxes[i]) + area(boxes[j]) - iw * ih)
        order = [j for j in order if iou(j) <= thresh]
    return keep


def _reference_detect(state: dict, frame: np.ndarray, conf_th: float, scale: float) -> np.ndarray:
    h, w = frame.shape[:2]
    img = _cv2_linear_resize(frame, scale) - np.array([123.0, 117.0, 104.0])  # RGB minus the RGB mean
    x = torch.from_numpy(img.transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        loc, conf, sizes = _reference_forward(state, x)
    loc, score = loc.numpy(), torch.softmax(conf, 1)[:, 1].numpy()
    priors = []
    for k, (fh, fw) in enumerate(sizes):
        st, ms = [4, 8, 16, 32, 64, 128][k], [16, 32, 64, 128, 256, 512][k]
        priors += [[(j + 0.5) * st / img.shape[1], (i + 0.5) * st / img.shape[0], ms / img.shape[1],
                    ms / img.shape[0]] for i in range(fh) for j in range(fw)]
    p = np.array(priors)
    centre = p[:, :2] + loc[:, :2] * 0.1 * p[:, 2:]
    size = p[:, 2:] * np.exp(loc[:, 2:] * 0.2)
    boxes = np.hstack([centre - size / 2, centre + size / 2])
    cand = np.nonzero(score > 0.05)[0]
    kept = cand[_greedy_nms(boxes[cand], score[cand], 0.3)][:750]
    kept = kept[score[kept] > conf_th]
    dets = np.hstack([boxes[kept] * [w, h, w, h], score[kept, None]])
    return dets[_greedy_nms(dets[:, :4], dets[:, 4], 0.1)]


@pytest.fixture(scope="module")
def random_state() -> dict:
    torch.manual_seed(0)
    net = S3FD()
    with torch.no_grad():  # spread the face scores so some clear the threshold
        for head in net.conf:
            head.weight.mul_(4.0)
    return net.state_dict()


@pytest.fixture(scope="module")
def detector(random_state, tmp_path_factory) -> S3FDDetector:
    path = tmp_path_factory.mktemp("s3fd") / "sfd_face.pth"
    torch.save(random_state, path)
    return S3FDDetector(path, device="cpu")


@pytest.mark.numerics
@pytest.mark.parametrize("shape,scale", [((130, 122), 0.25), ((96, 80), 0.5)])
def test_detect_equals_a_float64_reference(detector, random_state, shape, scale):
    frame = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    ours = detector.detect(frame, conf_th=0.7, scales=(scale,))
    ref = _reference_detect(random_state, frame, 0.7, scale)
    assert ours.dtype == np.float32 and ours.shape[1] == 5 and len(ours) >= 2
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-3)
    assert np.all(ours[:, 4] > 0.7) and np.all(np.diff(ours[:, 4]) <= 0)


@pytest.mark.numerics
def test_batch_equals_per_frame(detector):
    """Batching changes the convolutions' summation order, nothing else: boxes and scores agree within
    the float32 bound of S3FD's 31 convolutions (fan-in up to 1024x3x3), relative to the frame size for
    coordinates (0.37 px at 130 px) and to 1 for scores; frames mixed up by the batching miss by far more."""
    frames = np.random.default_rng(2).integers(0, 256, (3, 130, 122, 3), dtype=np.uint8)
    batch = detector.detect_batch(frames, conf_th=0.6, scales=(0.25, 0.5))
    single = [detector.detect(f, conf_th=0.6, scales=(0.25, 0.5)) for f in frames]
    assert sum(map(len, batch)) > 0 and [len(b) for b in batch] == [len(s) for s in single]
    pixels, score = (fp32_bound(scale, 1024 * 9, depth=31) for scale in (130.0, 1.0))
    for b, s in zip(batch, single):
        assert_fp32_close(b[:, :4], s[:, :4], pixels, "boxes")
        assert_fp32_close(b[:, 4], s[:, 4], score, "scores")
    mixed = detector.detect_batch(frames[[1, 0, 2]], conf_th=0.6, scales=(0.25, 0.5))[0]
    assert mixed.shape != single[0].shape or max_abs_diff(mixed[:, :4], single[0][:, :4]) > 10 * pixels


def test_nothing_found_gives_an_empty_float32_array(detector):
    out = detector.detect(np.zeros((128, 128, 3), np.uint8), conf_th=1.0)
    assert out.shape == (0, 5) and out.dtype == np.float32


def test_bad_frames_raise_data_error(detector):
    with pytest.raises(DataError):
        detector.detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(DataError):
        detector.detect_batch(np.zeros((1, 128, 128, 3), np.float32))
    with pytest.raises(DataError, match="28x28"):
        detector.detect(np.zeros((100, 200, 3), np.uint8))  # 25x50 at scale 0.25


def test_resize_matches_the_cv2_formula_and_cv2():
    img = np.random.default_rng(3).integers(0, 256, (130, 122, 3), dtype=np.uint8)
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    for s in (0.25, 0.5):  # weights 1/2: float32 interpolation is exact
        ours = resize_linear(t, s)[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(ours, _cv2_linear_resize(img, s))
    cv2 = pytest.importorskip("cv2")
    expected = cv2.resize(img, dsize=(0, 0), fx=0.25, fy=0.25, interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(resize_linear(t, 0.25)[0].permute(1, 2, 0).numpy().astype(np.uint8), expected)


@pytest.mark.parametrize("change,named", [("missing", "L2Norm4_3.weight"), ("extra", "vgg.35.weight")])
def test_mismatched_checkpoint_names_the_key_and_file(random_state, tmp_path: Path, change, named):
    state = dict(random_state)
    if change == "missing":
        del state["L2Norm4_3.weight"]
    else:
        state["vgg.35.weight"] = torch.zeros(1)
    path = tmp_path / "broken_sfd.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=named) as info:
        S3FDDetector(path, device="cpu")
    assert str(path) in str(info.value)


def test_known_weights_entry():
    assert SFD_FACE.filename == "sfd_face.pth"
    assert SFD_FACE.source == "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/sfd_face.pth"
    assert (SFD_FACE.sha256_prefix, SFD_FACE.sha256_suffix) == ("d54a87c2", "c491")
