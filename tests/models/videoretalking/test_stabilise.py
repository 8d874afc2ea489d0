"""VideoReTalking's steps 0-3 (talkingface.models.videoretalking.stabilise) against the release's own code
(``fixtures/official_stabilise.npz``, made by ``fixtures/make_stabilise_fixture.py``: step 0, the face-alignment
step's reuse of the previous frame, step 2 and the template chain cut out of ``inference.py`` at d32e8e5 and run on
5 seeded frames of the astronaut photo with a seeded ReconNet), plus what the release does not pin: the landmark
mapping into the crops (dots found where it puts them), the streaming pass (no frame kept), frames without a face,
D-Net's input (the template in rows 0..63 of every window column) and the paste back. Every numeric comparison has a
break planted into our code that misses it by far."""
from __future__ import annotations

import copy
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

import talkingface.models.videoretalking.stabilise as stabilise
from breaks import mutated
from fixture_tools import load_module
from numerics import EPS32, REL64, assert_close64, fp32_bound, max_abs_diff, scale_of
from talkingface.errors import CheckpointError, ConfigError, DataError
from talkingface.face.crops import resize_bilinear
from talkingface.face3d import load_lm3d
from talkingface.models.videoretalking.ffhq_crop import FfhqCrop, ffhq_crop
from talkingface.models.videoretalking.semantics import driving_batch
from talkingface.models.videoretalking.stabilise import (EXPRESSION_MAT, Stabiliser, build_stabiliser,
                                                         crop_landmarks, face_crop, load_expression_template,
                                                         missing_files, paste_stabilised, to_uint8)

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
OFFICIAL_COMMIT = "d32e8e58248255e2d243eeaf3cba545dbe505ca8"
seeded = load_module(FIXTURES / "seeded_stabilise.py", "videoretalking_seeded_stabilise")
seeded_dnet = load_module(FIXTURES / "seeded_dnet.py", "videoretalking_seeded_dnet_for_stabilise")
face3d_seeded = load_module(HERE.parents[1] / "face3d" / "fixtures" / "seeded.py", "face3d_seeded_for_stabilise")
SIZE = (seeded.WIDTH, seeded.HEIGHT)
COEFFS = slice(0, 257)
# ReconNet in float32 against the float64 release (docs/face3d.md): the largest fan-in 3 x 3 x 512 = 4608, 50 layers
RECON_TERMS, RECON_DEPTH = 4608, 50


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "official_stabilise.npz", allow_pickle=False) as data:
        return dict(data)


@pytest.fixture(scope="module")
def bfm(official, tmp_path_factory) -> Path:
    """A BFM folder with the stand-in's similarity_Lm3D_all.mat the fixture was made with."""
    folder = tmp_path_factory.mktemp("bfm")
    savemat(str(folder / "similarity_Lm3D_all.mat"), {"lm": official["lm"]})
    return folder


@pytest.fixture(scope="module")
def recon():
    return face3d_seeded.seeded_recon()


@pytest.fixture(scope="module")
def inputs(official):
    frame_landmarks, valid = seeded.landmarks(official["lm"])
    return seeded.frames(), frame_landmarks, valid


def stabiliser(recon, bfm, dtype=torch.float32, dnet=None, batch=8) -> Stabiliser:
    net = copy.deepcopy(recon).to(dtype)
    return Stabiliser(dnet or seeded_dnet.seeded_dnet("small"), net, load_lm3d(bfm), torch.linspace(-1, 1, 64),
                      batch=batch)


class CountingFrames:
    """The frames as a generator that makes each one afresh and records, at each step, how many of the frames it
    gave before are still alive (weak references): a pass that keeps frames makes that number grow."""

    def __init__(self, frames):
        self.frames, self.alive, self.given = frames, [], 0

    def __iter__(self):
        refs = []
        for frame in self.frames:
            self.alive.append(sum(ref() is not None for ref in refs))
            fresh = frame.copy()
            refs.append(weakref.ref(fresh))
            self.given += 1
            yield fresh
            del fresh


@pytest.fixture(scope="module")
def analysed(recon, bfm, inputs):
    """The float32 pass over the 5 frames (frames 0 and 4 without a face), streamed through CountingFrames."""
    frames, frame_landmarks, valid = inputs
    counting = CountingFrames(frames)
    return stabiliser(recon, bfm, batch=2).analyse(counting, frame_landmarks, valid, SIZE), counting


def test_the_fixture_is_the_release_on_the_seeded_inputs(official, recon, inputs):
    assert str(official["official_commit"]) == OFFICIAL_COMMIT
    assert str(official["recon_sha256"]) == face3d_seeded.recon_digest(recon)
    assert seeded.digest(inputs[0]) == str(official["frames_sha256"])  # scikit-image's photo, PIL's enlargement


# ---- step 0: the box and the 256 crops -----------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(seeded.CASES))
def test_the_256_crops_equal_the_releases(official, inputs, case, monkeypatch):
    """The release's box (its own Croper on the seeded landmarks) and its cv2.resize of every frame: byte-equal where
    the box is 256 x 256 (``video``: no resampling either side), within one grey level elsewhere (OpenCV's
    INTER_LINEAR uses 11-bit fixed-point weights: measured 1 on 12 % of the values). A box one pixel off misses."""
    frames = inputs[0]
    crop = ffhq_crop(seeded.landmarks(official["lm"], case)[0][1], SIZE)
    assert crop.crop == tuple(official[f"{case}_crop"]) and crop.region == tuple(official[f"{case}_region"])
    chosen = slice(None) if case == "video" else slice(1, 3)
    step = 4 if case == "video" else 2
    crops = np.stack([face_crop(frame, crop) for frame in frames])
    if case == "video":
        assert crop.region[1] - crop.region[0] == crop.region[3] - crop.region[2] == 256
        assert seeded.digest(crops) == str(official["video_crops256_sha256"])
    error = max_abs_diff(crops[chosen, ::step, ::step], official[f"{case}_crops256_strided"])
    assert error <= 1, error
    mutated(monkeypatch, stabilise, "face_crop", "crop.cut(frame)", "crop.cut(frame)[1:, 1:]")
    broken = np.stack([stabilise.face_crop(frame, crop) for frame in frames[chosen]])
    assert max_abs_diff(broken[:, ::step, ::step], official[f"{case}_crops256_strided"]) >= 10 * max(error, 1)


def test_crop_landmarks_land_where_the_resize_puts_the_dots():
    """Bright Gaussian dots drawn at fractional frame positions are found (intensity centroid) where
    ``crop_landmarks`` maps them, in a cut of 83 x 90 pixels enlarged to 256 (3.1 and 2.8 times): measured 0.018 px at
    most against a bound of 0.05 px (the centroid of a dot of sigma 1.5 px through a bilinear resize and uint8
    rounding); without the half-pixel centres the mapping misses by 1.03 px (21x), with the rows' and columns'
    scales swapped by 12 px (240x)."""
    height, width = 200, 240
    crop = FfhqCrop((50, 40, 200, 180), (10.5, 12.5, 100.5, 95.5), 0, (52, 135, 60, 150))
    rows, cols = stabilise.cut_ranges(crop, (width, height))
    assert (len(rows), len(cols)) == (83, 90)
    gx, gy = np.meshgrid(np.linspace(cols.start + 12.3, cols.stop - 12.6, 4), np.linspace(rows.start + 11.7,
                                                                                          rows.stop - 11.2, 4))
    dots = np.stack([gx.ravel(), gy.ravel()], 1)
    yy, xx = np.mgrid[0:height, 0:width]
    image = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5 ** 2)) for x, y in dots)
    frame = np.repeat(np.rint(250 * image).astype(np.uint8)[..., None], 3, axis=2)
    face = face_crop(frame, crop)[..., 0].astype(np.float64)

    def found(points):
        out = []
        for x, y in points:
            x0, y0 = int(round(x)), int(round(y))
            window = face[y0 - 14:y0 + 15, x0 - 14:x0 + 15]
            wy, wx = np.mgrid[y0 - 14:y0 + 15, x0 - 14:x0 + 15]
            out.append([(window * wx).sum() / window.sum(), (window * wy).sum() / window.sum()])
        return np.array(out)

    def error() -> float:
        mapped = stabilise.crop_landmarks(dots, crop, (width, height)).astype(np.float64)
        return float(np.abs(found(mapped) - mapped).max())

    assert error() <= 0.05, error()
    for old, new in (("- start + 0.5) * scale - 0.5", "- start) * scale"),
                     ("FACE_SIZE / len(cols), FACE_SIZE / len(rows)", "FACE_SIZE / len(rows), FACE_SIZE / len(cols)")):
        with pytest.MonkeyPatch.context() as patch:
            mutated(patch, stabilise, "crop_landmarks", old, new)
            assert error() >= 10 * 0.05, old


# ---- steps 1-2: landmarks and semantics ----------------------------------------------------------------------------
@pytest.mark.numerics
def test_semantics_equal_the_releases_in_float64(official, recon, bfm, inputs, monkeypatch):
    """(5, 262): the release's step 2 (its align_img, its split_coeff, its concatenation with trans_params rounded to
    float32; the ReconNet in float64) on the landmarks its step 1 hands over (frame 4, without a face, reusing frame
    3's). Measured 0 for the 257 coefficients and the 5 crop parameters. Landmarks with rows down instead of y up, or
    trans_params before the coefficients, miss by 1.5e8 and 1.5e9 times the bound (on frame 1 alone)."""
    frames, frame_landmarks, valid = inputs
    state = stabiliser(recon, bfm, torch.float64).analyse(iter(frames), frame_landmarks, valid, SIZE)
    assert state.semantics.dtype == np.float64 and state.semantics.shape == (5, 262)
    assert np.array_equal(state.landmarks, official["video_lm256"])  # what the release's step 1 returned
    expected = official["video_semantics"]
    assert_close64(state.semantics[:, COEFFS], expected[:, COEFFS], "coefficients")
    assert_close64(state.semantics[:, 257:], expected[:, 257:], "trans_params")
    assert np.array_equal(state.semantics[:, 257:259], np.full((5, 2), 256.0))  # w0, h0 of the 256 crop
    bound = REL64 * scale_of(expected)
    for owner, name, old, new in ((stabilise, "_flipped", "return landmarks_y_up(points, height)", "return points"),
                                  (Stabiliser, "analyse", "[coefficients, trans.astype(coefficients.dtype)]",
                                   "[trans.astype(coefficients.dtype), coefficients]")):
        with pytest.MonkeyPatch.context() as patch:
            mutated(patch, owner, name, old, new)
            broken = stabiliser(recon, bfm, torch.float64).analyse(iter(frames[1:2]), frame_landmarks[1:2],
                                                                   valid[1:2], SIZE)
        assert max_abs_diff(broken.semantics, expected[1:2]) >= 1e6 * bound, name


@pytest.mark.numerics
def test_semantics_in_float32_within_float32_error(official, analysed, recon, bfm, inputs):
    """The production path (float32 ReconNet, batches of 2) against the float64 release: measured 7 eps32 x scale
    for the coefficients against ``fp32_bound(scale, 4608, depth=50)`` = 27,153 eps32 x scale; the crop parameters
    equal (computed in float64 and rounded to float32 in both). Landmarks with rows down miss by 18x the bound,
    trans_params before the coefficients by 459x (the random ReconNet moves little with its crop)."""
    state, _ = analysed
    expected = official["video_semantics"]
    assert state.semantics.dtype == np.float32
    scale = scale_of(expected[:, COEFFS])
    bound = fp32_bound(scale, RECON_TERMS, RECON_DEPTH)
    error = max_abs_diff(state.semantics[:, COEFFS], expected[:, COEFFS])
    assert error <= bound, (error / (EPS32 * scale), bound / (EPS32 * scale))
    assert np.array_equal(state.semantics[:, 257:], expected[:, 257:].astype(np.float32))
    frames, frame_landmarks, valid = inputs
    for owner, name, old, new in ((stabilise, "_flipped", "return landmarks_y_up(points, height)", "return points"),
                                  (Stabiliser, "analyse", "[coefficients, trans.astype(coefficients.dtype)]",
                                   "[trans.astype(coefficients.dtype), coefficients]")):
        with pytest.MonkeyPatch.context() as patch:
            mutated(patch, owner, name, old, new)
            broken = stabiliser(recon, bfm).analyse(iter(frames[1:3]), frame_landmarks[1:3], valid[1:3], SIZE)
        assert max_abs_diff(broken.semantics[:, COEFFS], expected[1:3, COEFFS]) >= 10 * bound, name


def test_the_pass_streams_and_keeps_no_frame(analysed, recon, bfm, inputs, monkeypatch):
    """One pass in order; while it asks for the next frame at most one earlier frame is alive (the loop variable);
    the state holds per-frame vectors only. A pass that lists the frames first holds all of them."""
    state, counting = analysed
    assert counting.given == 5 and max(counting.alive) <= 1
    frame_bytes = inputs[0][0].nbytes
    assert all(getattr(state, name).nbytes * 10 < frame_bytes for name in ("landmarks", "semantics", "valid"))
    frames, frame_landmarks, valid = inputs
    mutated(monkeypatch, Stabiliser, "analyse", "for frame in frames:", "for frame in list(frames):")
    listing = CountingFrames(frames)
    with pytest.raises(DataError):  # stop after the pass over the frames: the landmarks are one frame short
        stabiliser(recon, bfm).analyse(listing, frame_landmarks[:4], valid[:4], SIZE)
    assert listing.alive[-1] == 4


def test_frames_without_a_face(analysed, official, recon, bfm, inputs):
    """Frame 1 (the first with a face) gives the box; frames 0 and 4 take the nearest face's crop landmarks; a video
    without any face, and frame counts that differ from the landmarks', are errors."""
    state, _ = analysed
    frames, frame_landmarks, valid = inputs
    assert state.first_face == 1 and np.array_equal(state.valid, valid)
    assert state.crop == ffhq_crop(frame_landmarks[1], SIZE) and state.region == (18, 274, 72, 328)
    assert np.array_equal(state.landmarks[0], state.landmarks[1])
    assert np.array_equal(state.landmarks[4], state.landmarks[3])
    assert np.array_equal(state.landmarks[1:4], crop_landmarks(frame_landmarks[1:4], state.crop, SIZE))
    assert np.isfinite(state.semantics).all()
    nan_face = frame_landmarks.copy()
    nan_face[2, 5] = np.nan  # one missing point: no face
    state2 = stabiliser(recon, bfm).analyse(iter(frames[:3]), nan_face[:3], np.ones(3, bool), SIZE)
    assert state2.valid.tolist() == [False, True, False]
    assert np.array_equal(state2.landmarks[0], state2.landmarks[1]) and np.array_equal(state2.landmarks[2],
                                                                                       state2.landmarks[1])
    worker = stabiliser(recon, bfm)
    with pytest.raises(DataError, match="no frame has a face"):
        worker.analyse(iter(frames), frame_landmarks, np.zeros(5, bool), SIZE)
    with pytest.raises(DataError, match="more frames than the 2 landmark frames"):
        worker.analyse(iter(frames[:3]), frame_landmarks[:2], valid[:2] | True, SIZE)
    with pytest.raises(DataError, match="2 frames for 3 landmark frames"):
        worker.analyse(iter(frames[1:3]), frame_landmarks[1:4], valid[1:4], SIZE)


# ---- step 3: D-Net's input and output ------------------------------------------------------------------------------
class SpyDNet(torch.nn.Module):
    """The seeded narrow D-Net, recording every call's image and driving tensor."""

    def __init__(self):
        super().__init__()
        self.net = seeded_dnet.seeded_dnet("small")
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, image, driving):
        self.calls.append((image.clone(), driving.clone()))
        return self.net(image, driving)


def test_dnet_gets_the_template_in_every_driving_column(analysed, recon, bfm, inputs, monkeypatch):
    """Rows 0..63 of every one of the 26 columns are exactly the template, rows 64..72 the frame's window
    (``driving_batch``), the image ``x / 255`` in float32 then ``(x - 0.5) / 0.5``, in batches of 2; the output is
    (B, 256, 256, 3) uint8. Without the template, or with the image left in [0, 1], the equalities fail."""
    state, _ = analysed
    frames = inputs[0]
    spy = SpyDNet()
    worker = Stabiliser(spy, copy.deepcopy(recon), load_lm3d(bfm), torch.linspace(-1, 1, 64), batch=2)
    indices = [4, 0, 2]
    out = worker.stabilised_batch(state, [frames[i] for i in indices], indices)
    assert out.shape == (3, 256, 256, 3) and out.dtype == np.uint8
    assert [tuple(image.shape) for image, _ in spy.calls] == [(2, 3, 256, 256), (1, 3, 256, 256)]
    images = torch.cat([image for image, _ in spy.calls])
    driving = torch.cat([drive for _, drive in spy.calls])
    template = torch.linspace(-1, 1, 64)
    assert torch.equal(driving[:, :64, :], template[None, :, None].expand(3, 64, 26))
    assert torch.equal(driving[:, 64:], driving_batch(state.semantics, indices)[:, 64:])
    crops = np.stack([face_crop(frames[i], state.crop) for i in indices])
    expected = (torch.from_numpy(crops).permute(0, 3, 1, 2).to(torch.float32) / 255 - 0.5) / 0.5
    assert torch.equal(images, expected)
    single = worker.stabilised(state, frames[2], 2)
    assert single.shape == (256, 256, 3) and single.dtype == np.uint8
    for owner, name, old, new in ((Stabiliser, "stabilised_batch", ", self.template)", ")"),
                                  (stabilise, "dnet_image", ".div(255).sub(0.5).div(0.5)", ".div(255)")):
        with pytest.MonkeyPatch.context() as patch:
            mutated(patch, owner, name, old, new)
            spy.calls.clear()
            worker.stabilised_batch(state, [frames[2]], [2])
            image, drive = spy.calls[0]
            assert not (torch.equal(drive[:, :64], template[None, :, None].expand(1, 64, 26))
                        and torch.equal(image, expected[2:3])), old


def test_uint8_conversion_equals_the_releases(official, monkeypatch):
    """Clamped, ``(x + 1) / 2 * 255`` in float32, truncated: equal to the release's line on values at and next to
    every conversion edge; rounding instead of truncating changes it."""
    fake = torch.from_numpy(seeded.fake_image())
    assert np.array_equal(to_uint8(fake)[0], official["fake_uint8"])
    mutated(monkeypatch, stabilise, "to_uint8", ".astype(np.uint8)", ".round().astype(np.uint8)")
    assert not np.array_equal(stabilise.to_uint8(fake)[0], official["fake_uint8"])


def test_paste_puts_the_crop_back_into_its_region(analysed, official, inputs, monkeypatch):
    """With the 256 x 256 region the frame's own crop pasted back is the frame (no resampling); with another region
    only the region changes, to the crop resized to it. A region off by one row changes the frame."""
    state, _ = analysed
    frame = inputs[0][2]
    assert np.array_equal(paste_stabilised(frame, face_crop(frame, state.crop), state), frame)
    small_crop = ffhq_crop(seeded.landmarks(official["lm"], "small")[0][1], SIZE)
    small = stabilise.StabiliserState(small_crop, SIZE, 1, state.valid, state.landmarks, state.semantics)
    face = np.full((256, 256, 3), 7, np.uint8)
    pasted = paste_stabilised(frame, face, small)
    oy1, oy2, ox1, ox2 = small.region
    assert (pasted[oy1:oy2, ox1:ox2] == 7).all()
    outside = np.ones(frame.shape[:2], bool)
    outside[oy1:oy2, ox1:ox2] = False
    assert np.array_equal(pasted[outside], frame[outside])
    assert np.array_equal(pasted[oy1:oy2, ox1:ox2], resize_bilinear(face, (oy2 - oy1, ox2 - ox1)))
    mutated(monkeypatch, stabilise, "paste_stabilised", "out[oy1:oy2, ox1:ox2] =", "out[oy1 + 1:oy2 + 1, ox1:ox2] =")
    assert not np.array_equal(stabilise.paste_stabilised(frame, face_crop(frame, state.crop), state), frame)


# ---- the template --------------------------------------------------------------------------------------------------
def test_expression_templates_from_expression_mat(official, tmp_path, monkeypatch):
    """Row 0 of ``expression_center`` / ``expression_mouth`` in the file's dtype (float64 and float32 here), equal to
    what the release's template chain loads from the same file; the file and the key named when missing; unknown
    names refused (the release takes any string without '.png' / '.jpg' for neutral). Taking ``neutral`` for every
    name misses ``smile``."""
    mat = seeded.expression_mat()
    savemat(str(tmp_path / "expression.mat"), mat)
    neutral, smile = (load_expression_template(name, tmp_path) for name in ("neutral", "Smile"))
    assert neutral.shape == smile.shape == (64,)
    assert neutral.dtype == torch.float64 and smile.dtype == torch.float32
    assert np.array_equal(neutral.numpy(), mat["expression_center"][0])
    assert np.array_equal(smile.numpy(), mat["expression_mouth"][0])
    assert np.array_equal(neutral.numpy(), official["template_neutral"])
    assert np.array_equal(smile.numpy(), official["template_smile"])
    with pytest.raises(CheckpointError, match=r"expression\.mat not found: .*OpenTalker/video-retalking"):
        load_expression_template("neutral", tmp_path / "absent")
    (tmp_path / "other").mkdir()
    savemat(str(tmp_path / "other" / "expression.mat"), {"expression_center": mat["expression_center"]})
    with pytest.raises(CheckpointError, match="has no 'expression_mouth'"):
        load_expression_template("smile", tmp_path / "other")
    with pytest.raises(ConfigError, match="expected 'neutral' or 'smile' or an image file"):
        load_expression_template("happy", tmp_path)
    mutated(monkeypatch, stabilise, "load_expression_template", "TEMPLATES[name])", "TEMPLATES['neutral'])")
    assert not np.array_equal(stabilise.load_expression_template("smile", tmp_path).numpy(), official["template_smile"])


class FixedFace:
    """A face backend that finds one face with the given landmarks, or none."""

    def __init__(self, landmarks):
        self.points = landmarks

    def detect(self, image):
        return [] if self.points is None else [object()]

    def landmarks(self, image, box):
        return self.points


@pytest.mark.numerics
def test_expression_from_an_image_equals_the_releases(official, recon, bfm, tmp_path, monkeypatch):
    """An image's own expression (the release's image branch, its BFM path bug aside: the same stand-in file), ReconNet
    in float64: measured 0; the landmarks given or found by a face backend; no face is an error. Landmarks with rows
    down miss by 3.5e7 times the bound."""
    image, image_landmarks = seeded.expression_image(official["lm"])
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "face.png")
    net, lm3d = copy.deepcopy(recon).double(), load_lm3d(bfm)
    ours = load_expression_template(str(tmp_path / "face.png"), tmp_path, net, lm3d, landmarks=image_landmarks)
    assert ours.shape == (64,) and ours.dtype == torch.float64
    assert_close64(ours.numpy(), official["template_expression"], "expression of the image")
    found = load_expression_template(tmp_path / "face.png", tmp_path, net, lm3d,
                                     face_backend=FixedFace(image_landmarks))
    assert torch.equal(found, ours)
    with pytest.raises(DataError, match="no face found"):
        load_expression_template(tmp_path / "face.png", tmp_path, net, lm3d, face_backend=FixedFace(None))
    with pytest.raises(ValueError, match="needs the ReconNet"):
        load_expression_template(tmp_path / "face.png", tmp_path)
    mutated(monkeypatch, stabilise, "_flipped", "return landmarks_y_up(points, height)", "return points")
    broken = stabilise.load_expression_template(tmp_path / "face.png", tmp_path, net, lm3d, landmarks=image_landmarks)
    assert max_abs_diff(broken, official["template_expression"]) >= 1e6 * REL64 * scale_of(
        official["template_expression"])


# ---- files ---------------------------------------------------------------------------------------------------------
def test_missing_files_are_named_with_their_source(tmp_path):
    checkpoints, bfm_folder = tmp_path / "checkpoints", tmp_path / "BFM"
    reasons = missing_files(checkpoints, bfm_folder)
    assert [reason.split(" ")[0] for reason in reasons] == [
        "face3d_pretrain_epoch_20.pth", "DNet.pt", "similarity_Lm3D_all.mat", "expression.mat"]
    assert all("see checkpoints/README.md" in reason for reason in reasons)
    assert f"not found at {checkpoints / 'DNet.pt'}" in reasons[1] and "OpenTalker/video-retalking" in reasons[1]
    assert "talkingface face3d standin" in reasons[2]
    checkpoints.mkdir()
    bfm_folder.mkdir()
    for path in (checkpoints / "face3d_pretrain_epoch_20.pth", checkpoints / "DNet.pt",
                 bfm_folder / "similarity_Lm3D_all.mat"):
        path.write_bytes(b"x")
    assert missing_files(checkpoints, bfm_folder) == [reasons[3]]
    assert missing_files(checkpoints, bfm_folder, template=str(tmp_path / "face.png")) == []
    (checkpoints / "expression.mat").write_bytes(b"x")
    assert missing_files(checkpoints, bfm_folder, template="smile") == []
    assert EXPRESSION_MAT.filename == "expression.mat" and "Apache-2.0" in EXPRESSION_MAT.licence
    assert [r.split(" ")[0] for r in missing_files(tmp_path / "none", bfm_folder, dnet=False)] == [
        "face3d_pretrain_epoch_20.pth", "expression.mat"]


def test_build_stabiliser_from_a_models_options(recon, bfm, tmp_path):
    """The model's D-Net, ReconNet read from ``checkpoint_dir``, lm3d from ``bfm_folder``, the named template; the
    missing files named together (DNet.pt is the model's own business)."""
    import types

    checkpoints = tmp_path / "checkpoints"
    dnet = seeded_dnet.seeded_dnet("small")
    model = types.SimpleNamespace(options={"checkpoint_dir": str(checkpoints), "bfm_folder": str(bfm),
                                           "face_backend": None}, dnet=dnet, config={})
    with pytest.raises(CheckpointError, match=r"face3d_pretrain_epoch_20\.pth not found.*expression\.mat not found"):
        build_stabiliser(model, "smile")
    checkpoints.mkdir()
    torch.save({"net_recon": recon.state_dict()}, checkpoints / "face3d_pretrain_epoch_20.pth")
    savemat(str(checkpoints / "expression.mat"), seeded.expression_mat())
    built = build_stabiliser(model, "smile", batch=3)
    assert built.dnet is dnet and built.batch == 3
    assert face3d_seeded.recon_digest(built.recon) == face3d_seeded.recon_digest(recon)
    assert np.array_equal(built.lm3d, load_lm3d(bfm))
    assert np.array_equal(built.template.numpy(), seeded.expression_mat()["expression_mouth"][0])
    with pytest.raises(ConfigError, match="'happy'"):
        build_stabiliser(model, "happy")
