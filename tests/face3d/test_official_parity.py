"""talkingface.face3d against the ORIGINAL code's outputs (``fixtures/official_face3d.npz``, made by
``fixtures/make_fixture.py`` from sicxu/Deep3DFaceRecon_pytorch and xinwen-cs/AudioDVP at the recorded commits).

- Builders: ``build-bfm`` on the fixture's raw stand-in files gives every array of ``transferBFM09``'s
  ``BFM_model_front.mat`` and of ``build_data.py``'s ``data.mat`` with the same dtype, shape and bytes (SHA-256:
  both are exact numpy steps). Breaks in our builder (AudioDVP's 92156.7 replaced by Deep3DFaceRecon's 1e5, the
  trimIndex map used without its -1) change the bytes.
- Face models, in float64 on seeded coefficients: ``compute_for_render`` equals bfm.py's and the AudioDVP
  convention equals face_model.py's steps (world space, clip and screen space, landmarks, SH colours) within
  ``assert_close64`` (1e-9 of the scale); float32 within ``fp32_bound``. Breaks in our code (the convention's
  coefficient order with exp and tex swapped, the other SH layout, translation after the rotation) miss the float32
  bound by orders of magnitude.
- ReconNet: the seeded weights are the fixture's (SHA-256); ours in float64 equals ReconNetWrapper('resnet50') in
  float64 (1e-9 of the scale), in float32 within ``fp32_bound``; breaks in our network (ResNet v1 strides, the tz
  and tx/ty layers swapped) miss by far more.
- align_img: trans_params and the landmarks in the crop within 1e-9 of their scale, the crop and the mask crop
  byte-equal; ``load_lm3d`` equal. Breaks in our code (the crop corner from t[1] - h0 / 2, a bilinear resize) miss.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from fixture_tools import load_module
from numerics import EPS32, assert_close64, fp32_bound, max_abs_diff, scale_of
from talkingface.face3d import ParametricFaceModel, align_img, build_bfm, load_lm3d
from talkingface.face3d import align as align_module
from talkingface.face3d import bfm_files
import talkingface.face3d.face_model as face_model_module

seeded = load_module(Path(__file__).resolve().parent / "fixtures" / "seeded.py", "face3d_seeded")


@pytest.fixture(scope="module")
def official():
    with np.load(seeded.FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def bfm(official, tmp_path_factory):
    """The fixture's raw files (padded to 53,215 expression vertices, as the originals read them) and both derived
    files built from them by ``build_bfm``."""
    folder = seeded.write_raw_files(tmp_path_factory.mktemp("official_bfm"), seeded.raw_arrays(official), True)
    build_bfm(folder)
    build_bfm(folder, convention="audiodvp")
    return folder


def test_the_fixture_records_the_official_commits(official):
    assert re.fullmatch(r"[0-9a-f]{40}", str(official["deep3d_commit"])), official["deep3d_commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", str(official["audiodvp_commit"])), official["audiodvp_commit"]
    assert str(official["align_numpy_version"]).startswith("1.")  # align_img needs numpy < 1.24


# ---- the derived files ---------------------------------------------------------------------------------------------
def digests(path) -> dict:
    return {k: seeded.array_digest(v) for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}


def expected_digests(official, prefix: str) -> dict:
    return {k[len(prefix):]: str(v) for k, v in official.items() if k.startswith(prefix)}


@pytest.mark.parametrize("name, prefix", [("BFM_model_front.mat", "transfer_sha256_"),
                                          ("data.mat", "build_data_sha256_")])
def test_built_files_equal_the_official_builders_bytes(official, bfm, name, prefix):
    assert digests(bfm / name) == expected_digests(official, prefix)


def test_builder_breaks_change_the_bytes(official, bfm, tmp_path, monkeypatch):
    monkeypatch.setattr(bfm_files, "AUDIODVP_SCALE", bfm_files.DEEP3D_SCALE)
    build_bfm(bfm, tmp_path / "data.mat", convention="audiodvp")
    changed = {k for k, v in digests(tmp_path / "data.mat").items()
               if v != expected_digests(official, "build_data_sha256_")[k]}
    assert changed == {"geo_mean", "id_base", "exp_base"}
    monkeypatch.undo()
    maps = bfm_files._vertex_maps
    monkeypatch.setattr(bfm_files, "_vertex_maps", lambda s: (maps(s)[0], np.minimum(maps(s)[1] + 1,
                                                                                    maps(s)[1].max())))
    build_bfm(bfm, tmp_path / "front.mat")
    changed = {k for k, v in digests(tmp_path / "front.mat").items()
               if v != expected_digests(official, "transfer_sha256_")[k]}
    assert changed == {"meanshape", "meantex", "idBase", "texBase"}


# ---- the face models -----------------------------------------------------------------------------------------------
def ours_deep3d(model: ParametricFaceModel, coeffs: torch.Tensor) -> dict:
    vertex, texture, color, landmark = model.compute_for_render(coeffs)
    return {"d3d_vertex": vertex, "d3d_texture": texture, "d3d_color": color, "d3d_landmark": landmark}


def ours_audiodvp(model: ParametricFaceModel, coeffs: torch.Tensor) -> dict:
    """AudioDVP's intermediate results from our model's steps: world space = ``transform`` (before ``to_camera``)."""
    parts = model.split_coeff(coeffs)
    shape = model.compute_shape(parts["id"], parts["exp"])
    rotation = model.compute_rotation(parts["angle"])
    world = model.transform(shape, rotation, parts["trans"])
    screen = model.to_image(model.to_camera(world))
    norm = model.compute_norm(shape) @ rotation
    texture = model.compute_texture(parts["tex"])
    return {"dvp_geo": shape, "dvp_texture": texture, "dvp_norm": norm, "dvp_world": world, "dvp_screen": screen,
            "dvp_landmark": model.get_landmarks(screen), "dvp_color": model.compute_color(texture, norm,
                                                                                        parts["gamma"])}


CASES = {"deep3dfacerecon": ("coeffs", ours_deep3d), "audiodvp": ("dvp_coeffs", ours_audiodvp)}


def face_model_bound(expected: np.ndarray, key: str) -> float:
    """float32 bound: 80-term basis sums, then up to 8 chained operations (pose, projection, normals, SH)."""
    return fp32_bound(scale_of(expected), terms=80, depth=8)


@pytest.mark.numerics
@pytest.mark.parametrize("convention", ["deep3dfacerecon", "audiodvp"])
def test_face_model_equals_the_official_code(official, bfm, convention):
    """float64: measured <= 2e-16 of the scale. float32 (bound 8 x 8 x sqrt(80) x eps32 x scale = 6.8e-5 x scale):
    measured at most ~10 eps32 x scale (the landmarks)."""
    model = ParametricFaceModel(bfm, convention=convention)
    coeff_key, run = CASES[convention]
    coeffs = torch.from_numpy(official[coeff_key])
    ours64 = run(model, coeffs)
    ours32 = run(model, coeffs.float())
    for key, value in ours64.items():
        assert_close64(value.numpy(), official[key], key)
        error = max_abs_diff(ours32[key].numpy(), official[key])
        assert error <= face_model_bound(official[key], key), (key, error / (EPS32 * scale_of(official[key])))


@pytest.mark.parametrize("convention, field, value", [
    ("deep3dfacerecon", "order", ("id", "tex", "exp", "angle", "gamma", "trans")),  # a swapped coefficient slice
    ("deep3dfacerecon", "gamma_channel_major", False),
    ("audiodvp", "translate_first", False),
    ("audiodvp", "unit_face_normals", True),
])
def test_face_model_breaks_miss_by_orders_of_magnitude(official, bfm, convention, field, value, monkeypatch):
    """Each break changes our model's convention (the code's switches), not the reference."""
    broken = dataclasses.replace(ParametricFaceModel(bfm, convention=convention).convention, **{field: value})
    if convention == "audiodvp":  # AudioDVP's branches test the convention by identity: patch the module's
        monkeypatch.setattr(face_model_module, "AUDIODVP", broken)
    model = ParametricFaceModel(bfm, convention=broken)
    coeff_key, run = CASES[convention]
    outputs = run(model, torch.from_numpy(official[coeff_key]).float())
    misses = {key: max_abs_diff(v.numpy(), official[key]) / face_model_bound(official[key], key)
              for key, v in outputs.items()}
    assert max(misses.values()) > 100, misses


# ---- ReconNet ------------------------------------------------------------------------------------------------------
RECON_DEPTH, RECON_TERMS = 50, 512 * 9  # conv1, 16 x 3 convs, a final layer; layer4's 3x3 conv fan-in


@pytest.fixture(scope="module")
def recon(official):
    net = seeded.seeded_recon()
    assert seeded.recon_digest(net) == str(official["recon_sha256"])  # the fixture's weights, byte for byte
    return net


def recon_run(net, dtype=torch.float32) -> np.ndarray:
    with torch.no_grad():
        return net.to(dtype)(seeded.recon_image().to(dtype)).double().numpy()


@pytest.mark.numerics
def test_recon_equals_the_official_network(official, recon):
    """Bound fp32_bound(scale, 4608, depth 50) = 27,153 eps32 x scale; measured on this AVX-512 EPYC: float64 0,
    float32 ~150-190 eps32 x scale under every kernel set."""
    expected = official["recon_out"]
    assert_close64(recon_run(copy.deepcopy(recon), torch.float64), expected, "ReconNet float64")
    bound = fp32_bound(scale_of(expected), RECON_TERMS, RECON_DEPTH)
    error = max_abs_diff(recon_run(recon), expected)
    assert error <= bound, (error, bound)


def v1_strides(net):
    """ResNet v1: the stride on each stage's first 1x1 conv instead of its 3x3 conv."""
    broken = copy.deepcopy(net)
    for stage in (broken.backbone.layer2, broken.backbone.layer3, broken.backbone.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    return broken


def swapped_translation_layers(net):
    broken = copy.deepcopy(net)
    layers = list(broken.final_layers)
    broken.final_layers = torch.nn.ModuleList(layers[:5] + [layers[6], layers[5]])
    return broken


@pytest.mark.parametrize("mutate", [v1_strides, swapped_translation_layers])
def test_recon_breaks_miss_by_orders_of_magnitude(official, recon, mutate):
    expected = official["recon_out"]
    bound = fp32_bound(scale_of(expected), RECON_TERMS, RECON_DEPTH)
    miss = max_abs_diff(recon_run(mutate(recon)), expected)
    assert miss > 30 * bound, miss / bound


# ---- align_img -----------------------------------------------------------------------------------------------------
def align_ours(official, case: str):
    lm68 = seeded.raw_arrays(official)["lm"]
    image, landmarks = seeded.align_inputs(case, lm68)
    return align_img(image, landmarks, official["align_lm3d"], mask=image[..., 0])


def test_load_lm3d_equals_the_official(official, bfm):
    assert np.array_equal(load_lm3d(bfm), official["align_lm3d"])
    assert load_lm3d(bfm).dtype == official["align_lm3d"].dtype


@pytest.mark.parametrize("case", [name for name, *_ in seeded.ALIGN_CASES])
def test_align_img_equals_the_official(official, case):
    params, crop, lm, mask = align_ours(official, case)
    assert str(official[f"align_{case}_params_dtype"]) == "object"  # the original's ragged array under numpy 1
    assert_close64(params, official[f"align_{case}_params"], "trans_params")
    assert_close64(lm, official[f"align_{case}_lm"], "landmarks in the crop")
    assert np.array_equal(crop, official[f"align_{case}_image"])
    assert np.array_equal(mask, official[f"align_{case}_mask"])


def test_align_img_breaks_are_seen(official, monkeypatch):
    case = seeded.ALIGN_CASES[2][0]
    expected = official[f"align_{case}_image"].astype(np.float64)

    def y_down_box(size, t, s, target_size=224.0):  # the crop corner from t[1] - h0 / 2 (y taken as the row)
        w, h, left, _ = box(size, t, s, target_size)
        return w, h, left, int(h / 2 - target_size / 2 + float((t[1] - size[1] / 2) * s))

    box = align_module.crop_box
    monkeypatch.setattr(align_module, "crop_box", y_down_box)
    assert np.abs(align_ours(official, case)[1] - expected).mean() > 40  # a different part of the image
    monkeypatch.undo()
    monkeypatch.setattr(align_module, "BICUBIC", align_module.Image.Resampling.BILINEAR)
    assert np.abs(align_ours(official, case)[1] - expected).mean() > 5
