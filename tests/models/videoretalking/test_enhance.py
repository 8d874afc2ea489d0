"""VideoReTalking's enhancement chain (talkingface.models.videoretalking.enhance) against the release's own code:
``fixtures/official_enhance.npz``, made by ``fixtures/make_enhance_fixture.py`` from GPEN's ``FaceEnhancement.process``
and ``GFPGANer.enhance`` with facexlib 0.2.5 (NumPy 1.23, OpenCV 4.10), on the astronaut of scikit-image with seeded
networks in the official layouts (narrow widths, float64) and a stand-in detector reporting known faces.

What is compared, and how:

- frames, crops, masks: the same bytes. Our arithmetic is the release's, written out (OpenCV's fixed-point warp, its
  blur and erosion, GPEN's float32 Umeyama with the two BLAS products in OpenBLAS's x86 order); the networks run in
  float64 on both sides (1e-15 apart) and the uint8 conversions, ParseNet's argmax (smallest official logit gap
  5.6e-8) and the masks' float32 sums leave a 1e-15 difference practically no way to change a byte (the same bytes
  under the avx2, sse4 and no-oneDNN kernel sets, and with OpenBLAS's Katmai to SkylakeX kernels);
- GPEN's alignment matrices: the same float64 numbers (its 2 x 2 SVD, determinant and rank are LAPACK's, as in the
  release; equal under NumPy 1.23.5 and 2.4.6);
- facexlib's LMedS matrix: within 1e-9 of its scale (rule 3's float64 bound, 1.7e-6 here): OpenCV ends with
  Levenberg-Marquardt steps that stop below FLT_EPSILON, ours solves the same least squares in closed form;
  measured 3.4e-12 (scale 1.7e3, so 2e-15 of it); dropping the outlier rejection misses by 1.6e8 x, skipping the
  refinement by 5.3e8 x (asserted > 1e6 x).

The networks here are tiny (GPEN 1/64 width, GFPGAN 1/32, ParseNet's 2-channel stand-in, all at 512): the release's
have their own parity tests (tests/test_gpen.py, test_gfpgan.py, test_parsenet.py, test_retinaface.py).
"""
from __future__ import annotations

import copy
import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import talkingface.models.videoretalking.enhance as enhance
from breaks import mutated
from fixture_tools import load_module
from numerics import REL64, max_abs_diff, scale_of, state_digest
from talkingface.face.retinaface import RetinaFace
from talkingface.models.videoretalking.enhance import (EnhancementNets, align_face_512, convert_scale_abs,
                                                       enhance_reference, erode_rect, face_blend, face_blend_mask,
                                                       facexlib_alignment, facexlib_center_face, facexlib_faces,
                                                       gaussian_blur_f32, gaussian_kernel_cv, gpen_alignment,
                                                       invert_affine, load_enhancement, restore_frame, smooth3x3,
                                                       warp_affine)

HERE = Path(__file__).resolve().parent
cases = load_module(HERE / "fixtures" / "make_enhance_fixture.py", "videoretalking_make_enhance_fixture")
REFERENCE_CASES = ("ref_one", "ref_two", "ref_low")


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    with np.load(HERE / "fixtures" / "official_enhance.npz", allow_pickle=False) as data:
        return dict(data)


@pytest.fixture(scope="module")
def networks() -> dict[str, torch.nn.Module]:
    return cases.seeded_networks()


@pytest.fixture(scope="module")
def nets(networks, official) -> EnhancementNets:
    """The chain in float64 (as the fixture ran the release) with the stand-in detector, whose outputs are the
    fixture's (``use_case`` picks the case)."""
    stand_in = cases.StandInRetinaFace(cases.detector_tables(official))
    return EnhancementNets.from_networks(stand_in, **{name: copy.deepcopy(net).double()
                                                      for name, net in networks.items()})


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def text(self) -> str:
        return "\n".join(record.getMessage() for record in self.records)


@pytest.fixture
def log():
    """The records of the module's logger (DEBUG and up), taken on the logger itself."""
    logger, handler = logging.getLogger(enhance.__name__), Records()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def opencv_inputs(official) -> dict[str, np.ndarray]:
    prefix = "opencv_input_"
    return {key[len(prefix):]: value for key, value in official.items() if key.startswith(prefix)}


def use_case(nets: EnhancementNets, case: str) -> np.ndarray:
    nets.detector.network.case = case
    return cases.case_image(case)


def digest(array) -> str:
    array = np.ascontiguousarray(np.asarray(array))
    return hashlib.sha256(f"{array.dtype}|{array.shape}|".encode() + array.tobytes()).hexdigest()


def test_the_fixture_records_the_release_its_environment_and_our_weights(official, networks):
    assert str(official["official_commit"]) == "d32e8e58248255e2d243eeaf3cba545dbe505ca8"
    assert str(official["facexlib_commit"]) == "9557a45094f3e4619fc5c145ef76adf9710fd054"  # facexlib v0.2.5
    assert str(official["numpy_version"]).startswith("1.23") and str(official["cv2_version"]) == "4.10.0"
    for name, net in networks.items():
        assert str(official[f"sha256_{name}"]) == state_digest(net.state_dict()), name


# ---- OpenCV, written out --------------------------------------------------------------------------------------------
def test_opencv_operations_equal_opencv_4_10(official):
    """warpAffine (uint8 with both borders, float32, float64; six matrices from x0.35 to x9), invertAffineTransform,
    GaussianBlur (k = 1 to 21, including OpenCV's fixed kernels and its 3- and 5-tap row code), erode (the empty
    kernel included), filter2D and convertScaleAbs: the same bytes as OpenCV's."""
    inputs = opencv_inputs(official)
    for index, matrix in enumerate(inputs["matrices"]):
        assert np.array_equal(invert_affine(matrix), official[f"opencv_invert_{index}"])
        for key, image, border in (("u8", inputs["image"], 0), ("grey", inputs["image"], (135, 133, 132)),
                                   ("f32", inputs["image32"], 0), ("f64", inputs["image64"], 0)):
            ours = warp_affine(image, matrix, cases.WARP_SIZE, border)
            assert ours.dtype == official[f"opencv_warp_{key}_{index}"].dtype
            assert np.array_equal(ours, official[f"opencv_warp_{key}_{index}"]), (key, index)
    for name in ("float", "mask"):
        for k in cases.BLUR_SIZES:
            assert np.array_equal(gaussian_blur_f32(inputs[name], k), official[f"opencv_blur_{name}_{k}"]), (name, k)
        for k in cases.ERODE_SIZES:
            assert np.array_equal(erode_rect(inputs[name], k), official[f"opencv_erode_{name}_{k}"]), (name, k)
    assert np.array_equal(smooth3x3(inputs["image"]), official["opencv_filter2d"])
    assert np.array_equal(convert_scale_abs(inputs["values64"]), official["opencv_scale_abs64"])
    assert np.array_equal(convert_scale_abs(inputs["values32"]), official["opencv_scale_abs32"])
    kernels = np.concatenate([gaussian_kernel_cv(k).astype(np.float32) for k in range(1, 62, 2)])
    assert np.array_equal(kernels, official["opencv_kernels"])


@pytest.mark.parametrize("what, old, new", [
    ("no half step before the 1/32 cut", "x0 = np.rint((m[1] * ys + m[2]) * 1024).astype(np.int64) + 16",
     "x0 = np.rint((m[1] * ys + m[2]) * 1024).astype(np.int64)"),
    ("weights summed in another order", "for k in (1, 2, 3):", "for k in (3, 2, 1):"),
])
def test_warp_breaks_change_bytes(official, monkeypatch, what, old, new):
    inputs = opencv_inputs(official)
    image, key = (inputs["image"], "u8") if "half" in what else (inputs["image32"], "f32")
    mutated(monkeypatch, enhance, "_warp_block", old, new)
    changed = [not np.array_equal(warp_affine(image, m, cases.WARP_SIZE), official[f"opencv_warp_{key}_{i}"])
               for i, m in enumerate(inputs["matrices"])]
    assert sum(changed) >= 2, changed


def test_blur_with_separate_roundings_differs(official, monkeypatch):
    """Rounding each product (OpenCV's SSE-only code) instead of OpenCV's fused multiply-adds changes the blur."""
    mutated(monkeypatch, enhance, "_fma32", "(acc.astype(np.float64) + x.astype(np.float64) * np.float64(k))",
            "(acc + (x * np.float32(k)))")
    inputs = opencv_inputs(official)
    assert not np.array_equal(gaussian_blur_f32(inputs["float"], 21), official["opencv_blur_float_21"])


# ---- alignment ----------------------------------------------------------------------------------------------------
def test_gpen_alignment_equals_the_release(official):
    """GPEN's reference points, and ``warp_and_crop_face``'s matrices (the forward one from ``_umeyama``) for 40
    seeded point sets and every face of the cases: the same float64 numbers."""
    assert np.array_equal(enhance.GPEN_REFERENCE_512, official["reference_points"])
    ours = [gpen_alignment(points) for points in official["point_sets"]]
    assert np.array_equal(np.array([m for m, _ in ours]), official["gpen_matrices"])
    assert np.array_equal(np.array([i for _, i in ours]), official["gpen_inverses"])
    for case in (*REFERENCE_CASES, "blend_box"):
        for index in range(int(official[f"{case}_faces"])):
            matrix, inverse = gpen_alignment(official[f"{case}_face{index}_points"].T)
            assert np.array_equal(matrix, official[f"{case}_face{index}_matrix"]), (case, index)
            assert np.array_equal(inverse, official[f"{case}_face{index}_inverse"]), (case, index)


def test_numpy2_scale_rounding_changes_the_crop(official, monkeypatch):
    """Under NumPy 2 the release's scale reciprocal would be float32: 6e-8 of the matrix, enough to move the 1/32-px
    sampling grid and change the crop's bytes (why the fixture runs NumPy 1.23)."""
    case = "ref_one"
    image = cases.case_image(case)
    crop, _, _ = align_face_512(image, official[f"{case}_face0_points"].T, "gpen")
    assert digest(crop) == str(official[f"{case}_face0_crop_sha256"])
    mutated(monkeypatch, enhance, "_umeyama32", "1.0 / np.float64(src_centred.var(axis=0).sum())",
            "np.float32(1.0) / src_centred.var(axis=0).sum()")
    crop, matrix, _ = align_face_512(image, official[f"{case}_face0_points"].T, "gpen")
    assert 0 < max_abs_diff(matrix, official[f"{case}_face0_matrix"]) < 1e-4
    assert digest(crop) != str(official[f"{case}_face0_crop_sha256"])


def lmeds_error(official) -> tuple[float, float]:
    ours = np.array([facexlib_alignment(points) for points in official["point_sets"]])
    return max_abs_diff(ours, official["lmeds_matrices"]), REL64 * scale_of(official["lmeds_matrices"])


def test_lmeds_alignment_matches_opencv_and_breaks_miss(official, monkeypatch):
    """cv2.estimateAffinePartial2D(points, FFHQ template, LMEDS) on 40 seeded sets (8 of their 200 points are
    OpenCV's outliers): within 1e-9 of the matrices' scale (measured 3.4e-12, scale 1.7e3). Breaks: least
    squares over all points (no outlier rejection), the best two-point model without refinement."""
    error, bound = lmeds_error(official)
    assert error <= bound, (error, bound)
    assert (~official["lmeds_inliers"].astype(bool)).sum() == 8
    with monkeypatch.context() as patch:
        mutated(patch, enhance, "estimate_similarity_lmeds",
                "inliers = _similarity_errors(best, src, dst) <= np.float32(sigma * sigma)",
                "inliers = np.ones(count, bool)")
        broken, _ = lmeds_error(official)
    assert broken >= 10 * bound and broken / bound > 1e6, (broken, bound)
    with monkeypatch.context() as patch:
        mutated(patch, enhance, "estimate_similarity_lmeds",
                "a, b, tx, ty = _least_squares_similarity(src[inliers], dst[inliers])", "a, b, tx, ty = best")
        broken, _ = lmeds_error(official)
    assert broken >= 10 * bound and broken / bound > 1e6, (broken, bound)


def test_crops_equal_the_release(official):
    """The 512 crops of every face: GPEN's (black border) and facexlib's (grey border), the same bytes."""
    for case in REFERENCE_CASES:
        image = cases.case_image(case)
        for index in range(int(official[f"{case}_faces"])):
            crop, _, _ = align_face_512(image, official[f"{case}_face{index}_points"].T, "gpen")
            assert digest(crop) == str(official[f"{case}_face{index}_crop_sha256"]), (case, index)
    for case in ("frame_restore", "ref_one"):
        crop, matrix, inverse = align_face_512(cases.case_image(case), official[f"gfpgan_{case}_landmarks"][0],
                                               "facexlib")
        assert digest(crop) == str(official[f"gfpgan_{case}_crop_sha256"]), case
        assert max_abs_diff(inverse, official[f"gfpgan_{case}_inverse"]) <= REL64 * 512


# ---- detection -------------------------------------------------------------------------------------------------
def test_facexlib_detection_keeps_the_release_faces(official, nets):
    """facexlib's thresholds, NMS and centre face on the stand-in's faces: the box and points it kept. A slipped
    index (facexlib 0.2.5) drops the face nearest the centre; with 0.3.0's indices that face would be taken."""
    for case in ("frame_restore", "ref_one", "ref_low"):
        image = use_case(nets, case)
        boxes, points = facexlib_faces(nets.detector, image)
        index = facexlib_center_face(boxes, points, *image.shape[:2])
        if int(official[f"gfpgan_{case}_faces"]) == 0:
            assert index is None, case
            continue
        assert np.array_equal(boxes[index], official[f"gfpgan_{case}_det_faces"][0]), case
        assert np.array_equal(points[index], official[f"gfpgan_{case}_landmarks"][0]), case


def test_the_eye_distance_slip_is_kept(official, nets, monkeypatch):
    image = use_case(nets, "frame_restore")
    mutated(monkeypatch, enhance, "facexlib_center_face",
            "eye_dist = np.linalg.norm([pts[0, 1] - pts[1, 1], pts[1, 0] - pts[2, 0]])",
            "eye_dist = np.linalg.norm(pts[0] - pts[1])")
    boxes, points = facexlib_faces(nets.detector, image)
    index = enhance.facexlib_center_face(boxes, points, *image.shape[:2])
    assert not np.array_equal(points[index], official["gfpgan_frame_restore_landmarks"][0])


# ---- the three steps ------------------------------------------------------------------------------------------------
@pytest.mark.numerics
@pytest.mark.parametrize("case", ["ref_one", "ref_two"])
def test_enhance_reference_equals_the_release(official, nets, case):
    """Step 5 (``process(img, img, face_enhance=True, possion_blending=False)``): the astronaut (a 46 px face: GPEN's
    small-face blur runs), and the astronaut with a second face at 0.93 (GPEN's detector takes it, facexlib's does
    not; the release keeps only the last, lower-scoring face's sharp mask, so its output equals ``ref_low``'s, where
    that face is alone, and the astronaut's enhancement is thrown away)."""
    image = use_case(nets, case)
    out = enhance_reference(image, nets)
    assert out.dtype == np.uint8 and np.array_equal(out, official[f"{case}_out"]), case
    assert (out != image).any()


def test_the_fixture_shows_the_last_face_quirk(official):
    assert np.array_equal(official["ref_two_out"], official["ref_low_out"])
    assert not np.array_equal(official["ref_two_out"], official["ref_one_out"])


@pytest.mark.numerics
def test_face_blend_equals_the_release(official, nets):
    """Step 6's ``process(pp, xf, bbox=c, face_enhance=False, possion_blending=True)``: the re-warped face and
    ``np.float32(mask_sharp * mask_bbox)`` it hands to the blend (and ``full_mask`` without a box): the same bytes."""
    frame = use_case(nets, "frame_blend")
    blend = face_blend(frame, nets, cases.BLEND_BBOX)
    assert np.array_equal(blend.face, official["blend_face"])
    assert blend.mask.dtype == np.float32 and np.array_equal(blend.mask, official["blend_box_mask"])
    assert np.array_equal(blend.soft, official["blend_nobox_mask"])  # face_blend(frame, nets).mask
    y1, y2, x1, x2 = cases.BLEND_BBOX
    box = np.zeros(frame.shape[:2])
    box[y1:y2 - 5, x1:x2] = 1
    assert np.array_equal((blend.sharp * box).astype(np.float32), official["blend_box_mask"])


@pytest.mark.numerics
@pytest.mark.parametrize("case", ["frame_restore", "ref_one"])
def test_restore_frame_equals_the_release(official, nets, case):
    """Step 6's ``GFPGANer.enhance(ff, has_aligned=False, only_center_face=True, paste_back=True)``, upscale 1:
    the same bytes (frame_restore: five candidates, one kept; ref_one: a small face, soft edge 3 px)."""
    out = restore_frame(use_case(nets, case), nets)
    assert out.dtype == np.uint8 and np.array_equal(out, official[f"gfpgan_{case}_out"]), case


# ---- no face, missing weights -------------------------------------------------------------------------------------
def test_no_face_passes_the_image_through(official, nets, log):
    """Where the release raises (GPEN: UnboundLocalError) or returns the frame (facexlib), the same bytes come
    back, with a debug message; also with a RetinaFace-R50 of random weights, which finds nothing at 0.9."""
    assert str(official["ref_none_error"]) == "UnboundLocalError"
    assert bool(official["gfpgan_ref_low_unchanged"])
    image = use_case(nets, "ref_none")
    assert np.array_equal(enhance_reference(image, nets), image)
    assert face_blend_mask(image, nets) is None and face_blend(image, nets) is None
    assert "no face found" in log.text
    image = use_case(nets, "ref_low")
    assert np.array_equal(restore_frame(image, nets), image)
    torch.manual_seed(0)
    detector = RetinaFace()  # random weights; its class heads biased to background (~1e-4), as untrained ones are not
    with torch.no_grad():
        for head in detector.ClassHead:
            head.conv1x1.weight.mul_(1e-3)
            head.conv1x1.bias.copy_(torch.tensor([4.5, -4.5]).repeat(len(head.conv1x1.bias) // 2))
    random = EnhancementNets.from_networks(detector, nets.gpen, nets.gfpgan, nets.parsenet)
    image = cases.case_image("ref_one")
    assert np.array_equal(enhance_reference(image, random), image)
    assert np.array_equal(restore_frame(image, random), image)


def test_missing_weights_warn_once_each_and_pass_through(tmp_path, log):
    nets = load_enhancement(tmp_path, "cpu")
    assert nets == EnhancementNets()
    messages = [record.getMessage() for record in log.records]
    assert len(messages) == 4, messages
    for message, name in zip(messages, ("RetinaFace-R50.pth", "GPEN-BFR-512.pth", "GFPGANv1.3.pth",
                                        "ParseNet-latest.pth")):
        assert name in message and str(tmp_path) in message and "vinthony/video-retalking" in message, message
        assert "skipped" in message or "not " in message, message
    image = cases.case_image("ref_one")
    assert np.array_equal(enhance_reference(image, nets), image)
    assert np.array_equal(restore_frame(image, nets), image)
    assert face_blend_mask(image, nets) is None
    log.records.clear()
    assert load_enhancement(tmp_path, "cpu", need=()) == EnhancementNets()
    with pytest.raises(ValueError, match="need"):
        load_enhancement(tmp_path, "cpu", need=("esrgan",))
    assert not log.records


def test_bad_images_are_refused(nets):
    with pytest.raises(Exception, match="uint8"):
        enhance_reference(np.zeros((8, 8, 3), np.float32), nets)
    with pytest.raises(Exception, match="uint8"):
        restore_frame(np.zeros((8, 8), np.uint8), nets)
