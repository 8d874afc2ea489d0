"""The face model files (talkingface.face3d.bfm_files, standin): ``build-bfm`` on the stand-in's raw files against
an independent numpy reading of Deep3DFaceRecon's ``transferBFM09`` and AudioDVP's ``build_data.py`` (keys,
dtypes, shapes and bits), the stand-in's geometry surviving the index maps, errors that name the file, atomic
writes, and the stand-in markers.

The expectations below follow the reference's description (/work/shared/reference/3dmm_methods.md §1.2, §7), written
without the module's helpers: per-vertex gathers through ``idx - 1`` and ``trimIndex[idx - 1] - 1``, bases times
eigenvalues, 1e5 (or 92156.7) and 255. Exact equality holds because both sides do the same elementwise float
operations on the same stored values (a gather does not change a value).
"""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import scipy.io

from talkingface.cli import main
from talkingface.errors import DataError
from talkingface.face3d import (BFM_FRONT, ParametricFaceModel, build_bfm, is_standin, load_lm3d, read_exp_pca,
                                standin_mesh, write_standin_bfm)
from talkingface.face3d import bfm_files
from talkingface.face3d.standin import RAW_OFFSET

VERTICES = 400


@pytest.fixture(scope="module")
def raw_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bfm_raw")
    write_standin_bfm(folder, VERTICES, derived=False)
    return folder


def user_variables(path) -> dict:
    return {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}


def raw_inputs(folder) -> dict:
    """The raw files read without the module: Exp_Pca.bin as int32 + float32 words."""
    data = (folder / "Exp_Pca.bin").read_bytes()
    count = int(np.frombuffer(data[:4], "<i4")[0])
    trim = scipy.io.loadmat(str(folder / "BFM_exp_idx.mat"))["trimIndex"]
    n_exp = trim.size
    components = np.frombuffer(data, "<f4", count=3 * n_exp * count, offset=4 + 12 * n_exp).reshape(count, -1).T
    return {"model": scipy.io.loadmat(str(folder / "01_MorphableModel.mat")), "exp_pc": components,
            "exp_std": np.loadtxt(folder / "std_exp.txt"), "trim": trim,
            "idx": scipy.io.loadmat(str(folder / "BFM_front_idx.mat"))["idx"],
            "info": scipy.io.loadmat(str(folder / "facemodel_info.mat"))}


def vertex_maps(raw: dict) -> tuple[list[int], list[int]]:
    """Per front vertex: its expression-model vertex and its shape-model vertex, 0-based."""
    exp_vertex = [int(i) - 1 for i in raw["idx"].ravel()]
    shape_vertex = [int(raw["trim"].ravel()[e]) - 1 for e in exp_vertex]
    return exp_vertex, shape_vertex


def rows(vertices: list[int]) -> np.ndarray:
    return np.array([3 * v + axis for v in vertices for axis in range(3)])


def expected_front(raw: dict) -> dict:
    model, info = raw["model"], raw["info"]
    exp_vertex, shape_vertex = vertex_maps(raw)
    shape_rows, exp_rows = rows(shape_vertex), rows(exp_vertex)
    return {
        "meanshape": (model["shapeMU"][shape_rows, 0] / 1e5)[None],
        "meantex": model["texMU"][shape_rows, 0][None],
        "idBase": model["shapePC"][shape_rows, :80] * model["shapeEV"][:80, 0] / 1e5,
        "exBase": raw["exp_pc"][exp_rows, :64] * raw["exp_std"][:64] / 1e5,
        "texBase": model["texPC"][shape_rows, :80] * model["texEV"][:80, 0],
        **{key: info[key] for key in ("tri", "point_buf", "tri_mask2", "keypoints", "frontmask2_idx", "skinmask")},
        bfm_files.STANDIN_KEY: model[bfm_files.STANDIN_KEY],
    }


def assert_same_arrays(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for key in expected:
        a, e = actual[key], expected[key]
        assert (a.shape, a.dtype) == (e.shape, e.dtype), (key, a.shape, a.dtype, e.shape, e.dtype)
        assert np.array_equal(a, e), key


def test_build_bfm_reproduces_transfer_bfm09(raw_folder, tmp_path, capsys):
    out = tmp_path / "BFM_model_front.mat"
    assert main(["face3d", "build-bfm", str(raw_folder), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"{out} (synthetic stand-in, not the Basel Face Model)"
    written = user_variables(out)
    assert_same_arrays(written, expected_front(raw_inputs(raw_folder)))
    # transferBFM09's dtypes on BFM-like inputs (float32 model, float64 std_exp.txt): exBase is float64
    assert [written[k].dtype for k in ("meanshape", "idBase", "exBase", "texBase")] == ["f4", "f4", "f8", "f4"]
    assert written["idBase"].shape == (3 * VERTICES, 80) and written["exBase"].shape == (3 * VERTICES, 64)


def test_build_bfm_keeps_the_standin_geometry(raw_folder, tmp_path):
    """Independent of any re-derivation: the built mean shape is the stand-in mesh (shifted by the raw files'
    offset), vertex for vertex, to float32 rounding; a map without one of its -1 offsets would scramble it."""
    mesh = standin_mesh(VERTICES)
    front = user_variables(build_bfm(raw_folder, tmp_path / "front.mat"))
    built = front["meanshape"].reshape(-1, 3).astype(np.float64)
    truth = mesh.vertices + RAW_OFFSET
    bound = 4 * np.finfo(np.float32).eps * np.abs(truth).max()  # float32 storage, /1e5 and x1e5: a few roundings
    assert np.abs(built - truth).max() <= bound
    assert np.array_equal(front["tri"].astype(np.int64) - 1, mesh.faces)
    assert np.array_equal(front["keypoints"].ravel().astype(np.int64) - 1, mesh.keypoints)
    raw = raw_inputs(raw_folder)
    exp_vertex, _ = vertex_maps(raw)
    shape_mean = raw["model"]["shapeMU"].reshape(-1, 3)
    off_by_one = [int(raw["trim"].ravel()[e]) for e in exp_vertex]  # the break: trimIndex used as 0-based
    scrambled = shape_mean[np.minimum(off_by_one, len(shape_mean) - 1)] / 1e5
    assert np.abs(scrambled - truth).max() > 100 * bound


def test_build_bfm_audiodvp_reproduces_build_data(raw_folder, tmp_path):
    out = build_bfm(raw_folder, tmp_path / "data.mat", convention="audiodvp")
    raw = raw_inputs(raw_folder)
    model, info = raw["model"], raw["info"]
    exp_vertex, shape_vertex = vertex_maps(raw)
    shape_rows, exp_rows = rows(shape_vertex), rows(exp_vertex)
    geo_mean = model["shapeMU"][shape_rows] / 92156.7
    triangles = info["tri"].astype(np.int32) - 1
    centred = geo_mean.reshape(-1, 3) - geo_mean.reshape(-1, 3).mean(axis=0, keepdims=True)
    lower = {i for i in range(len(centred)) if centred[i, 1] < 0}
    expected = {
        "triangles": triangles,
        "key_points": (info["keypoints"][0].astype(np.int64) - 1)[None],  # savemat stores 1-D as a row
        "point_buf": (info["point_buf"].astype(np.int32) - 1).astype(np.int64),
        "mouth_triangles": np.stack([t for t in triangles if any(int(v) in lower for v in t)]),
        "geo_mean": geo_mean,
        "tex_mean": model["texMU"][shape_rows] / 255.0,
        "id_base": model["shapePC"][shape_rows, :80] * model["shapeEV"][:80, 0] / 92156.7,
        "exp_base": (raw["exp_pc"][exp_rows, :64] * raw["exp_std"][:64]).astype(np.float32) / 92156.7,
        "tex_base": model["texPC"][shape_rows, :80] * model["texEV"][:80, 0] / 255.0,
        bfm_files.STANDIN_KEY: model[bfm_files.STANDIN_KEY],
    }
    assert_same_arrays(user_variables(out), expected)


def test_readers_match_the_original_loaders(raw_folder):
    mean, components = read_exp_pca(raw_folder / "Exp_Pca.bin")  # vertex count from the file size
    raw = raw_inputs(raw_folder)
    assert np.array_equal(components, raw["exp_pc"]) and mean.shape == (3 * raw["trim"].size,)
    lm = scipy.io.loadmat(str(raw_folder / "similarity_Lm3D_all.mat"))["lm"]
    five = load_lm3d(raw_folder)  # Deep3DFaceRecon's load_lm3d: eyes (means), nose tip, mouth corners
    expected = np.stack([(lm[36] + lm[39]) / 2, (lm[42] + lm[45]) / 2, lm[30], lm[48], lm[54]])
    assert five.shape == (5, 3) and np.allclose(five, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("name,damage,message", [
    ("Exp_Pca.bin", "remove", r"lacks Exp_Pca.bin \(from Guo et al\."),
    ("Exp_Pca.bin", "truncate", "Exp_Pca.bin: .* bytes, but 79 components"),
    ("01_MorphableModel.mat", "text", "01_MorphableModel.mat: cannot read as a MATLAB .mat file"),
    ("facemodel_info.mat", "drop tri", r"facemodel_info.mat: variable\(s\) tri missing"),
    ("BFM_exp_idx.mat", "out of range", "BFM_exp_idx.mat: trimIndex values span"),
    ("std_exp.txt", "short", "std_exp.txt: 78 values for 79 expression components"),
])
def test_missing_or_malformed_files_are_named_and_nothing_is_written(raw_folder, tmp_path, name, damage, message):
    folder = tmp_path / "bfm"
    folder.mkdir()
    for file in raw_folder.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    target = folder / name
    if damage == "remove":
        target.unlink()
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:-4])
    elif damage == "text":
        target.write_text("not a mat file")
    elif damage == "drop tri":
        info = user_variables(target)
        del info["tri"]
        scipy.io.savemat(str(target), info)
    elif damage == "out of range":
        trim = user_variables(target)["trimIndex"].astype(np.uint32)
        trim[5] = 10**6
        scipy.io.savemat(str(target), {"trimIndex": trim})
    elif damage == "short":
        target.write_text(" ".join(target.read_text().split()[:-1]))
    before = sorted(os.listdir(folder))
    with pytest.raises(DataError, match=message):
        build_bfm(folder)
    assert sorted(os.listdir(folder)) == before  # no BFM_model_front.mat, no temporary file


def test_a_failed_write_leaves_the_previous_file(raw_folder, tmp_path, monkeypatch):
    out = tmp_path / BFM_FRONT
    out.write_bytes(b"previous")

    def half_written(path, arrays):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(bfm_files.scipy.io, "savemat", half_written)
    with pytest.raises(OSError, match="disk full"):
        build_bfm(raw_folder, out)
    assert out.read_bytes() == b"previous" and sorted(os.listdir(tmp_path)) == [BFM_FRONT]


def test_standin_is_marked_and_the_face_model_says_so(raw_folder, tmp_path, caplog):
    assert (raw_folder / "STANDIN.txt").read_text().startswith("SYNTHETIC STAND-IN, NOT THE BASEL FACE MODEL")
    assert is_standin(raw_folder) and is_standin(raw_folder / "facemodel_info.mat")
    bare = tmp_path / "unmarked"  # the same arrays without the marker read as the real model
    bare.mkdir()
    front = user_variables(build_bfm(raw_folder, tmp_path / "front.mat"))
    del front[bfm_files.STANDIN_KEY]
    scipy.io.savemat(str(bare / BFM_FRONT), front)
    assert not is_standin(bare) and not is_standin(bare / BFM_FRONT)
    folder = tmp_path / "built_on_first_use"
    folder.mkdir()
    for file in raw_folder.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    logger = logging.getLogger("talkingface.face3d")  # "talkingface" may not propagate (setup_logging)
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="talkingface.face3d"):
            model = ParametricFaceModel(folder)  # BFM_model_front.mat is built first, as bfm.py does
            real = ParametricFaceModel(bare)
    finally:
        logger.removeHandler(caplog.handler)
    assert (folder / BFM_FRONT).is_file() and model.is_standin and not real.is_standin
    messages = list(dict.fromkeys(r.getMessage() for r in caplog.records if "face model" in r.getMessage()))
    assert "SYNTHETIC STAND-IN, not the Basel Face Model" in messages[0] and messages[1].endswith(": BFM09")


def test_a_folder_without_files_says_what_to_get(tmp_path):
    with pytest.raises(DataError, match=r"cannot be built: .* lacks 01_MorphableModel.mat, Exp_Pca.bin"):
        ParametricFaceModel(tmp_path)
    assert main(["face3d", "build-bfm", str(tmp_path / "absent")]) == 1


def test_standin_command_writes_the_raw_and_derived_files(tmp_path, capsys):
    folder = tmp_path / "standin"
    assert main(["face3d", "standin", str(folder), "--vertices", "300", "--audiodvp"]) == 0
    assert capsys.readouterr().out.strip() == f"{folder} (synthetic stand-in, not the Basel Face Model)"
    assert sorted(os.listdir(folder)) == sorted([*bfm_files.RAW_FILES, "similarity_Lm3D_all.mat", "STANDIN.txt",
                                                 BFM_FRONT, "data.mat"])
    front = user_variables(folder / BFM_FRONT)
    boundary = round(629 * (300 / 35709) ** 0.5)  # BFM's 629 boundary vertices, scaled; F = 2 V - boundary
    assert front["meanshape"].shape == (1, 900) and front["tri"].shape == (2 * 300 - boundary, 3)
    assert main(["face3d", "standin", str(tmp_path / "tiny"), "--vertices", "50"]) == 1
