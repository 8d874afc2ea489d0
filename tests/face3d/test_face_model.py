"""The parametric face model (talkingface.face3d.ParametricFaceModel) in both conventions, on the stand-in files.

- Whole pipeline against an independent float64 numpy reading of the formulas (Deep3DFaceRecon's bfm.py and
  AudioDVP's renderer/face_model.py as described in /work/shared/reference/3dmm_methods.md §1.2, §2.3, §7 and
  docs/face3d.md): ``assert_close64`` (1e-9 of the scale). Vertex normals are summed over incident triangles
  found from ``tri`` with ``np.add.at``, not through ``point_buf``.
- Closed forms in float32: zero coefficients give the mean shape (exactly); rotation matrices orthonormal and equal
  to a hand-built Rz Ry Rx; ambient-only SH gives (init + gamma) sqrt(pi)/2 albedo; a landmark is the pinhole
  projection of its vertex. Bounds from ``fp32_bound`` (a K-term sum, depth = the chained operations), each with a
  deliberate break (transposed rotation, the other gamma layout, a keypoint off by one) that misses by >= 100x.
- The stand-in's jaw direction moves the lower lip and chin down and leaves the upper lip; the two conventions
  differ as documented (coefficient order, pose, camera, SH layout and initial light, normals, centring).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io
import torch

from numerics import EPS32, assert_close64, fp32_bound, max_abs_diff, scale_of
from talkingface.face3d import JAW_COMPONENT, JAW_OPEN_SIGN, MIRROR_68, ParametricFaceModel, write_standin_bfm

VERTICES = 400


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("bfm_face_model")
    write_standin_bfm(path, VERTICES, raw=False, derived=True, audiodvp=True)
    return path


@pytest.fixture(scope="module")
def deep3d(folder):
    return ParametricFaceModel(folder)


@pytest.fixture(scope="module")
def audiodvp(folder):
    return ParametricFaceModel(folder, convention="audiodvp")


def seeded_coeffs(batch: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    """Plausible coefficients (the same layout-free numbers for both conventions): small pose and lighting."""
    g = torch.Generator().manual_seed(seed)
    coeffs = torch.randn(batch, 257, generator=g, dtype=torch.float64) * 0.5
    return coeffs.to(dtype)


# ---- independent float64 references ----------------------------------------------------------------------------
def rotation_numpy(angles: np.ndarray) -> np.ndarray:
    """(B, 3, 3) R = Rz(c) Ry(b) Rx(a) for angles (a, b, c)."""
    out = []
    for a, b, c in angles:
        rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
        rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
        out.append(rz @ ry @ rx)
    return np.stack(out)


def vertex_normals_numpy(shape: np.ndarray, tri: np.ndarray, unit_faces: bool) -> np.ndarray:
    v1, v2, v3 = shape[:, tri[:, 0]], shape[:, tri[:, 1]], shape[:, tri[:, 2]]
    face = np.cross(v1 - v2, v2 - v3)
    if unit_faces:
        face = face / np.linalg.norm(face, axis=-1, keepdims=True)
    normals = np.zeros_like(shape)
    for k in range(3):
        for b in range(len(shape)):
            np.add.at(normals[b], tri[:, k], face[b])
    return normals / np.linalg.norm(normals, axis=-1, keepdims=True)


def sh_basis_numpy(n: np.ndarray) -> np.ndarray:
    a = [np.pi, 2 * np.pi / np.sqrt(3), 2 * np.pi / np.sqrt(8)]
    c = [1 / np.sqrt(4 * np.pi), np.sqrt(3) / np.sqrt(4 * np.pi), 3 * np.sqrt(5) / np.sqrt(12 * np.pi)]
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    return np.stack([a[0] * c[0] * np.ones_like(x), -a[1] * c[1] * y, a[1] * c[1] * z, -a[1] * c[1] * x,
                     a[2] * c[2] * x * y, -a[2] * c[2] * y * z, 0.5 * a[2] * c[2] / np.sqrt(3) * (3 * z**2 - 1),
                     -a[2] * c[2] * x * z, 0.5 * a[2] * c[2] * (x**2 - y**2)], -1)


def deep3d_numpy(front: dict, c: np.ndarray, break_normals: bool = False) -> tuple:
    """bfm.py's compute_for_render in float64 from BFM_model_front.mat (bases float32 as bfm.py keeps them)."""
    f32 = lambda key: front[key].astype(np.float32).astype(np.float64)  # noqa: E731
    mean = front["meanshape"].astype(np.float32).reshape(-1, 3)
    mean = (mean - np.mean(mean, axis=0, keepdims=True)).astype(np.float64).reshape(-1)  # recentred in float32
    shape = (mean + c[:, :80] @ f32("idBase").T + c[:, 80:144] @ f32("exBase").T).reshape(len(c), -1, 3)
    rot = rotation_numpy(c[:, 224:227])
    posed = np.einsum("bij,bnj->bni", rot, shape) + c[:, None, 254:257]
    camera = np.concatenate([posed[..., :2], 10.0 - posed[..., 2:]], -1)
    keypoints = front["keypoints"].ravel().astype(np.int64) - 1
    landmarks = 1015.0 * camera[:, keypoints, :2] / camera[:, keypoints, 2:] + 112.0
    texture = ((c[:, 144:224] @ f32("texBase").T + f32("meantex")) / 255.0).reshape(len(c), -1, 3)
    tri = front["tri"].astype(np.int64) - 1
    normals = np.einsum("bij,bnj->bni", rot, vertex_normals_numpy(shape, tri, unit_faces=not break_normals))
    gamma = c[:, 227:254].reshape(-1, 3, 9) + np.float64(np.float32(0.8)) * np.eye(9)[0]
    light = np.einsum("bnk,bck->bnc", sh_basis_numpy(normals), gamma)
    return camera, texture, light * texture, landmarks


def audiodvp_numpy(data: dict, c: np.ndarray, focal: float, break_pose: bool = False) -> tuple:
    """AudioDVP's FaceModel in float64 from data.mat: alpha, beta, delta, gamma, rotation, translation."""
    f32 = lambda key: data[key].astype(np.float32).astype(np.float64)  # noqa: E731
    shape = (f32("geo_mean").ravel() + c[:, :80] @ f32("id_base").T
             + c[:, 160:224] @ f32("exp_base").T).reshape(len(c), -1, 3)
    rot, t = rotation_numpy(c[:, 251:254]), c[:, None, 254:257]
    posed = np.einsum("bij,bnj->bni", rot, shape) - t if break_pose else np.einsum("bij,bnj->bni", rot, shape - t)
    camera = np.stack([-posed[..., 0], -posed[..., 1], 8.0 - posed[..., 2]], -1)  # eye (0, 0, 8), up (0, -1, 0)
    keypoints = data["key_points"].ravel()[MIRROR_68]
    landmarks = focal * camera[:, keypoints, :2] / camera[:, keypoints, 2:] + 128.0
    texture = (f32("tex_mean").ravel() + c[:, 80:160] @ f32("tex_base").T).reshape(len(c), -1, 3)
    normals = np.einsum("bij,bnj->bni", rot, vertex_normals_numpy(shape, data["triangles"].astype(np.int64), False))
    gamma = c[:, 224:251].reshape(-1, 9, 3) + np.float64(np.float32(0.7)) * np.eye(9)[0][:, None]
    light = np.einsum("bnk,bkc->bnc", sh_basis_numpy(normals), gamma)
    return camera, texture, light * texture, landmarks


@pytest.mark.numerics
def test_deep3dfacerecon_pipeline_matches_the_formulas_in_float64(folder, deep3d):
    front = scipy.io.loadmat(str(folder / "BFM_model_front.mat"))
    coeffs = seeded_coeffs(3)
    ours = deep3d.compute_for_render(coeffs)
    expected = deep3d_numpy(front, coeffs.numpy())
    for name, a, e in zip(("vertices", "texture", "colour", "landmarks"), ours, expected):
        assert a.dtype == torch.float64
        assert_close64(a.numpy(), e, name)
    broken = deep3d_numpy(front, coeffs.numpy(), break_normals=True)[2]  # AudioDVP's area-weighted normals
    assert max_abs_diff(ours[2], broken) > 1e4 * 1e-9 * scale_of(expected[2])


@pytest.mark.numerics
def test_audiodvp_pipeline_matches_the_formulas_in_float64(folder, audiodvp):
    data = scipy.io.loadmat(str(folder / "data.mat"))
    coeffs = seeded_coeffs(3, seed=1)
    ours = audiodvp.compute_for_render(coeffs)
    expected = audiodvp_numpy(data, coeffs.numpy(), audiodvp.focal)
    for name, a, e in zip(("vertices", "texture", "colour", "landmarks"), ours, expected):
        assert_close64(a.numpy(), e, name)
    # focal = cot(12.5 deg) * 128, the float32 cotangent of tf_mesh_renderer's perspective()
    assert abs(audiodvp.focal - 128 / math.tan(math.radians(12.5))) <= 2 * EPS32 * audiodvp.focal
    broken = audiodvp_numpy(data, coeffs.numpy(), audiodvp.focal, break_pose=True)[0]  # Deep3D's R v - t
    assert max_abs_diff(ours[0], broken) > 1e4 * 1e-9 * scale_of(expected[0])


@pytest.mark.parametrize("convention", ["deep3dfacerecon", "audiodvp"])
def test_zero_coefficients_give_the_mean_shape(folder, convention):
    model = ParametricFaceModel(folder, convention=convention)
    zeros = torch.zeros(2, model.num_coeffs)
    parts = model.split_coeff(zeros)
    mean = model.tensor("mean_shape").reshape(1, -1, 3)
    assert torch.equal(model.compute_shape(parts["id"], parts["exp"]), mean.expand(2, -1, -1))
    vertices, texture, _, _ = model.compute_for_render(zeros)
    sign = -1.0 if convention == "audiodvp" else 1.0
    expected = torch.stack([sign * mean[..., 0], sign * mean[..., 1], model.camera_distance - mean[..., 2]], -1)
    assert torch.equal(vertices, expected.expand(2, -1, -1))
    divisor = 255.0 if convention == "deep3dfacerecon" else 1.0
    assert torch.equal(texture, (model.tensor("mean_tex") / divisor).reshape(1, -1, 3).expand(2, -1, -1))
    centroid = mean[0].double().mean(0).abs().max().item()
    if convention == "deep3dfacerecon":  # recentred (bfm.py's recenter=True); AudioDVP keeps BFM's origin
        assert centroid <= fp32_bound(scale_of(mean), VERTICES)
    else:
        assert centroid > 0.1


@pytest.mark.numerics
@pytest.mark.parametrize("convention", ["deep3dfacerecon", "audiodvp"])
def test_rotation_is_orthonormal_and_the_hand_built_matrix(folder, convention):
    model = ParametricFaceModel(folder, convention=convention)
    angles = torch.tensor([[0.3, -0.2, 0.5], [0.0, math.pi / 2, 0.0], [-1.1, 0.7, 2.9]])
    rot = model.compute_rotation(angles).double()
    bound = fp32_bound(1.0, terms=3, depth=3)  # three chained 3x3 products of float32 sines and cosines
    eye = torch.eye(3, dtype=torch.float64).expand(3, -1, -1)
    assert max_abs_diff(rot @ rot.transpose(1, 2), eye) <= bound
    assert max_abs_diff(torch.linalg.det(rot), torch.ones(3)) <= bound
    expected = rotation_numpy(angles.double().numpy()).transpose(0, 2, 1)  # points @ rot = R points
    error = max_abs_diff(rot, expected)
    assert error <= bound
    assert max_abs_diff(rot.transpose(1, 2), expected) > 100 * bound  # the break: R instead of R^T
    yaw = model.compute_rotation(torch.tensor([[0.0, math.pi / 2, 0.0]], dtype=torch.float64))[0]
    points = torch.eye(3, dtype=torch.float64) @ yaw  # Ry(90 deg): x -> -z, z -> x
    assert max_abs_diff(points, [[0, 0, -1], [0, 1, 0], [1, 0, 0]]) <= 1e-15
    assert torch.equal(model.compute_rotation(angles[..., None]), model.compute_rotation(angles))  # (B, 3, 1)


@pytest.mark.numerics
@pytest.mark.parametrize("convention,ambient,init", [("deep3dfacerecon", [0, 9, 18], 0.8),
                                                     ("audiodvp", [0, 1, 2], 0.7)])
def test_ambient_light_scales_the_albedo(folder, convention, ambient, init):
    """Only the ambient SH coefficient: colour = (init + gamma_c) * a0 c0 * albedo, a0 c0 = sqrt(pi) / 2, whatever
    the normals. Deep3DFaceRecon reads gamma as (3 channels, 9 bands), AudioDVP as (9 bands, 3 channels)."""
    model = ParametricFaceModel(folder, convention=convention)
    g = torch.Generator().manual_seed(3)
    albedo = torch.rand(2, VERTICES, 3, generator=g, dtype=torch.float64).float()
    normals = torch.nn.functional.normalize(torch.randn(2, VERTICES, 3, generator=g, dtype=torch.float64), dim=-1)
    gamma = torch.zeros(2, 27)
    gamma[:, ambient] = torch.tensor([0.1, 0.2, 0.3])
    colour = model.compute_color(albedo, normals.float(), gamma).double()
    expected = (init + torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)) * math.sqrt(math.pi) / 2 * albedo.double()
    bound = fp32_bound(scale_of(expected), terms=9, depth=3)  # Y (products), a 9-term sum, times the albedo
    assert max_abs_diff(colour, expected) <= bound
    other = [0, 1, 2] if convention == "deep3dfacerecon" else [0, 9, 18]  # the other code's layout: the break
    wrong = torch.zeros(2, 27)
    wrong[:, other] = torch.tensor([0.1, 0.2, 0.3])
    assert max_abs_diff(model.compute_color(albedo, normals.float(), wrong), expected) > 100 * bound


@pytest.mark.numerics
def test_landmark_is_the_pinhole_projection_of_its_vertex(folder, deep3d, audiodvp):
    """Zero shape, a translation: Deep3DFaceRecon u = 1015 (x + tx) / (10 - z - tz) + 112 (v alike, upwards);
    AudioDVP u = 128 - f (x - tx') / (8 - z + tz') with its rotation applied after -t (here none)."""
    for model, index in ((deep3d, deep3d.tensor("keypoints")), (audiodvp, audiodvp.tensor("keypoints"))):
        coeffs = torch.zeros(1, 257)
        trans = torch.tensor([0.05, -0.1, 0.4])
        coeffs[:, model.coeff_slices["trans"]] = trans
        landmarks = model.compute_for_render(coeffs)[3][0].double()
        mean = model.tensor("mean_shape").reshape(-1, 3).double()
        if model is deep3d:
            p = mean + trans.double()
            expected = torch.stack([1015.0 * p[:, 0] / (10 - p[:, 2]) + 112, 1015.0 * p[:, 1] / (10 - p[:, 2]) + 112], 1)
        else:
            p = mean - trans.double()
            f = model.focal
            expected = torch.stack([128 - f * p[:, 0] / (8 - p[:, 2]), 128 - f * p[:, 1] / (8 - p[:, 2])], 1)
        bound = fp32_bound(scale_of(expected[index]), terms=3, depth=4)  # translate, z flip, divide, scale
        assert max_abs_diff(landmarks, expected[index]) <= bound
        assert max_abs_diff(landmarks, expected[index + 1]) > 100 * bound  # the break: a keypoint off by one


def test_jaw_direction_opens_the_mouth(deep3d, audiodvp):
    """Expression coefficient 0 at -3 (JAW_OPEN_SIGN): lower lip (57, 66) and chin (8) move down in the image,
    the upper lip (51, 62) stays. Deep3DFaceRecon's v grows upwards, AudioDVP's downwards (image rows)."""
    for model, down in ((deep3d, -1.0), (audiodvp, 1.0)):
        closed = torch.zeros(1, 257)
        opened = closed.clone()
        opened[0, model.coeff_slices["exp"].start + JAW_COMPONENT] = 3 * JAW_OPEN_SIGN
        move = (model.compute_for_render(opened)[3] - model.compute_for_render(closed)[3])[0]
        assert (down * move[[57, 66, 8], 1] > 3.0).all(), move[[57, 66, 8]]  # pixels
        assert down * move[8, 1] > down * move[57, 1]  # the chin drops further than the lip
        assert move[[51, 62]].abs().max() < 1e-3


def test_conventions_differ_as_documented(folder, deep3d, audiodvp):
    coeffs = seeded_coeffs(2, torch.float32)
    d, a = deep3d.split_coeff(coeffs), audiodvp.split_coeff(coeffs)
    assert torch.equal(d["exp"], coeffs[:, 80:144]) and torch.equal(a["exp"], coeffs[:, 160:224])
    assert torch.equal(d["tex"], coeffs[:, 144:224]) and torch.equal(a["tex"], coeffs[:, 80:160])
    assert torch.equal(d["angle"], coeffs[:, 224:227]) and torch.equal(a["angle"], coeffs[:, 251:254])
    assert torch.equal(d["gamma"], coeffs[:, 227:254]) and torch.equal(a["gamma"], coeffs[:, 224:251])
    assert deep3d.num_coeffs == audiodvp.num_coeffs == 257
    # Same pose, opposite order: Deep3DFaceRecon v R^T + t, AudioDVP (v - t) R^T.
    point = torch.tensor([[[0.1, 0.2, 0.3]]])
    rot = deep3d.compute_rotation(torch.tensor([[0.0, 0.0, math.pi / 2]]))
    t = torch.tensor([[1.0, 0.0, 0.0]])
    assert max_abs_diff(deep3d.transform(point, rot, t), [[[0.8, 0.1, 0.3]]]) < 1e-6
    assert max_abs_diff(audiodvp.transform(point, rot, t), [[[-0.2, -0.9, 0.3]]]) < 1e-6
    # Camera: both put landmark 0 (the subject's right jaw) on the image's left and the chin below the nose
    # tip, AudioDVP by a mirrored camera (x, y negated) and the mirrored keypoint list, its v counting rows down.
    zeros = torch.zeros(1, 257)
    lm_d, lm_a = deep3d.compute_for_render(zeros)[3][0], audiodvp.compute_for_render(zeros)[3][0]
    assert lm_d[0, 0] < 112 < lm_d[16, 0] and lm_a[0, 0] < 128 < lm_a[16, 0]
    assert lm_d[8, 1] < lm_d[30, 1] and lm_a[8, 1] > lm_a[30, 1]
    assert torch.equal(audiodvp.tensor("keypoints"),
                       torch.from_numpy(scipy.io.loadmat(str(folder / "data.mat"))["key_points"].ravel()[MIRROR_68]))
    assert torch.equal(deep3d.tensor("keypoints"), audiodvp.tensor("keypoints")[MIRROR_68])
    # Geometry scale: BFM micrometres / 1e5 against / 92156.7 (and AudioDVP keeps the raw origin).
    span_d = np.ptp(deep3d.tensor("mean_shape").reshape(-1, 3).numpy(), axis=0)
    span_a = np.ptp(audiodvp.tensor("mean_shape").reshape(-1, 3).numpy(), axis=0)
    assert np.allclose(span_a / span_d, 1e5 / 92156.7, rtol=1e-5)


def test_inputs_choose_dtype_and_shapes_are_checked(deep3d):
    for dtype in (torch.float32, torch.float64):
        outputs = deep3d.compute_for_render(seeded_coeffs(2, dtype))
        assert [o.dtype for o in outputs] == [dtype] * 4
        assert [tuple(o.shape) for o in outputs] == [(2, VERTICES, 3)] * 3 + [(2, 68, 2)]
    with pytest.raises(ValueError, match=r"coefficients must be \(B, 257\)"):
        deep3d.compute_for_render(torch.zeros(2, 256))
