"""AudioDVP's pixels: our projection + rasterizer against a literal transcription of AudioDVP's renderer, pixel by
pixel, on a posed stand-in face; and the size each convention's fitting renders at.

The transcription (xinwen-cs/AudioDVP, ``renderer/camera.py`` and ``renderer/kernels/rasterize_triangles_kernel.cu``,
a port of tf_mesh_renderer): the ``Camera``'s clip-space matrix built as ``look_at`` and ``perspective`` build it
(eye (0, 0, 8), up (0, -1, 0), fov_y 25 degrees, near 0.01, far 100, float32 torch, as the original), applied in
float64 to the world-space vertices of our ``ParametricFaceModel`` (convention ``audiodvp``); then the forward
kernel, one triangle after the other, in float64 numpy: the unnormalised inverse of the clip [x, y, w] matrix with
the determinant's sign transferred, the pixel box, pixel (ix, iy) sampled at NDC ((ix + 0.5) / 128 - 1,
(iy + 0.5) / 128 - 1) with no flip (row iy is NDC y), the edge test with the kernel's tolerance (all >= -1e-5, one
> 0), perspective-correct barycentrics, z = clip z / clip w kept in [-1, 1] and the nearest z winning
(``atomicMin``; an exact tie goes to the later triangle here, to a race there). CUDA-only, so it cannot run here:
the test is a transcription, written from the kernel's source, not a fixture of its output.

Ours renders ``screen_vertices(model, vertices, FitSettings().size_for(model))``: screen-space barycentrics, so the
comparison first makes them perspective-correct (b_k / w_k, renormalised; w = the vertex's camera depth = clip w,
docs/face3d.md, "Screen-space interpolation"). Measured on the 500-vertex stand-in (926 triangles, 13,704 pixels):
coverage equal everywhere; face index equal except at 7 pixels, each one whose centre lies just outside the kernel's
triangle (its smallest barycentric -1.5e-6 to -6.5e-4, admitted only by the tolerance) and inside ours, the
neighbour across the shared edge; there the two 3D points differ by 3.2e-5 of the face's width; elsewhere the
barycentrics agree to 5.2e-13. Over 18 random poses of 300-, 500- and 1,000-vertex stand-ins: 0 to 14 such pixels,
none outside the band, barycentrics within 5.3e-13. Breaks planted into our projection (``to_image`` with pixel
centres at integers: half a pixel; ``screen_vertices`` one row down; rows flipped) give 3,236 / 4,128 / 15,813
pixels outside that tolerance band (MAX_TIES = 20) and barycentrics off by 0.80 / 0.84 / 0.89 (bound 1e-9).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from breaks import mutated
from talkingface.face3d import FitSettings, ParametricFaceModel, rasterize, write_standin_bfm
import talkingface.face3d.fitting as fitting
from talkingface.face3d.align import TARGET_SIZE
from talkingface.face3d.portrait import CROP_SIZE

VERTICES = 500
MAX_TIES = 20  # pixels whose centre is within the kernel's tolerance of an edge (measured 7; 0 to 14 over poses)
BARY_BOUND = 1e-9  # float64: both are ratios of edge functions of the same points (measured 5.2e-13)
TIE_POINT_BOUND = 1e-3  # of the face's width: a tie picks the other side of an edge, not another place (3.2e-5)
KERNEL_EPS = -0.00001  # pixel_is_inside_triangle's loosened constraint


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("bfm_kernel_pixels")
    write_standin_bfm(path, VERTICES, raw=False, derived=True, audiodvp=True)
    return path


# ---- the transcription ---------------------------------------------------------------------------------------
def look_at(eye: torch.Tensor, center: torch.Tensor, world_up: torch.Tensor) -> torch.Tensor:
    """renderer/camera.py: look_at (gluLookAt), as written there (``torch.cross`` given its ``dim``)."""
    batch_size = center.shape[0]
    forward = center - eye
    forward = torch.nn.functional.normalize(forward, dim=1, p=2)
    to_side = torch.cross(forward, world_up, dim=1)
    to_side = torch.nn.functional.normalize(to_side, dim=1, p=2)
    cam_up = torch.cross(to_side, forward, dim=1)
    w_column = torch.tensor(batch_size * [[0., 0., 0., 1.]])
    w_column = torch.reshape(w_column, [batch_size, 4, 1])
    view_rotation = torch.stack([to_side, cam_up, -forward, torch.zeros_like(to_side)], dim=1)
    view_rotation = torch.cat([view_rotation, w_column], dim=2)
    identity_batch = torch.unsqueeze(torch.eye(3), 0).repeat([batch_size, 1, 1])
    view_translation = torch.cat([identity_batch, torch.unsqueeze(-eye, 2)], 2)
    view_translation = torch.cat([view_translation, torch.reshape(w_column, [batch_size, 1, 4])], 1)
    return torch.matmul(view_rotation, view_translation)


def perspective(aspect_ratio: torch.Tensor, fov_y: torch.Tensor, near_clip: torch.Tensor,
                far_clip: torch.Tensor) -> torch.Tensor:
    """renderer/camera.py: perspective (gluPerspective), as written there."""
    focal_lengths_y = 1.0 / torch.tan(fov_y * (math.pi / 360.0))
    depth_range = far_clip - near_clip
    p_22 = -(far_clip + near_clip) / depth_range
    p_23 = -2.0 * (far_clip * near_clip / depth_range)
    zeros = torch.zeros_like(p_23, dtype=torch.float32)
    perspective_transform = torch.cat(
        [focal_lengths_y / aspect_ratio, zeros, zeros, zeros,
         zeros, focal_lengths_y, zeros, zeros,
         zeros, zeros, p_22, p_23,
         zeros, zeros, -torch.ones_like(p_23, dtype=torch.float32), zeros], dim=0)
    perspective_transform = torch.reshape(perspective_transform, [4, 4, -1])
    return perspective_transform.permute(2, 0, 1)


def official_clip_vertices(world: np.ndarray) -> np.ndarray:
    """(N, 4) clip-space vertices: ``Camera().forward`` (``transform_homogeneous`` with the float32
    ``clip_space_transforms``), the product taken in float64."""
    camera_matrices = look_at(torch.tensor([[0.0, 0.0, 8.0]]), torch.tensor([[0.0, 0.0, 0.0]]),
                              torch.tensor([[0.0, -1.0, 0.0]]))
    perspective_transforms = perspective(torch.tensor([1.0]), torch.tensor([25.0]), torch.tensor([0.01]),
                                         torch.tensor([100.0]))
    clip_space_transforms = torch.matmul(perspective_transforms, camera_matrices)[0].double().numpy()
    homogeneous = np.concatenate([world, np.ones((len(world), 1))], axis=1)
    return homogeneous @ clip_space_transforms.T


def official_rasterize(vertices: np.ndarray, triangles: np.ndarray, image_width: int,
                       image_height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rasterize_triangles_cuda_forward_kernel in float64, triangles in order (each thread's pixels vectorised):
    (px_triangle_ids (H, W) int32 initialised to 0, px_barycentric_coordinates (H, W, 3) initialised to 0, z_buffer
    (H, W) initialised to 1)."""
    px_triangle_ids = np.zeros((image_height, image_width), np.int32)
    px_barycentric_coordinates = np.zeros((image_height, image_width, 3))
    z_buffer = np.ones((image_height, image_width))
    half_image_width, half_image_height = 0.5 * image_width, 0.5 * image_height
    for triangle_id, (v0_id, v1_id, v2_id) in enumerate(triangles):
        (v0x, v0y, v0z, v0w), (v1x, v1y, v1z, v1w), (v2x, v2y, v2z, v2w) = vertices[[v0_id, v1_id, v2_id]]
        if v0w < 0 and v1w < 0 and v2w < 0:
            continue
        # compute_unnormalized_matrix_inverse(v0x, v1x, v2x, v0y, v1y, v2y, v0w, v1w, v2w)
        a11, a12, a13, a21, a22, a23, a31, a32, a33 = v0x, v1x, v2x, v0y, v1y, v2y, v0w, v1w, v2w
        m_inv = np.array([a22 * a33 - a32 * a23, a13 * a32 - a33 * a12, a12 * a23 - a22 * a13,
                          a23 * a31 - a33 * a21, a11 * a33 - a31 * a13, a13 * a21 - a23 * a11,
                          a21 * a32 - a31 * a22, a12 * a31 - a32 * a11, a11 * a22 - a21 * a12])
        det = a11 * m_inv[0] + a12 * m_inv[3] + a13 * m_inv[6]
        if det < 0.0:
            m_inv = -m_inv
        left, right, bottom, top = 0, image_width, 0, image_height
        if v0w > 0 and v1w > 0 and v2w > 0:
            p_x = [(x / w + 1.0) * half_image_width for x, w in ((v0x, v0w), (v1x, v1w), (v2x, v2w))]
            p_y = [(y / w + 1.0) * half_image_height for y, w in ((v0y, v0w), (v1y, v1w), (v2y, v2w))]
            left = min(max(math.floor(min(p_x)), 0), image_width)  # clamped_integer_min
            right = min(max(math.ceil(max(p_x)), 0), image_width)  # clamped_integer_max
            bottom = min(max(math.floor(min(p_y)), 0), image_height)
            top = min(max(math.ceil(max(p_y)), 0), image_height)
        iy, ix = (grid.ravel() for grid in np.mgrid[bottom:top, left:right])
        px = ((ix + 0.5) / half_image_width) - 1.0
        py = ((iy + 0.5) / half_image_height) - 1.0
        b_over_w = np.stack([m_inv[3 * i] * px + m_inv[3 * i + 1] * py + m_inv[3 * i + 2] for i in range(3)])
        inside = np.all(b_over_w >= KERNEL_EPS, axis=0) & np.any(b_over_w > 0, axis=0)  # pixel_is_inside_triangle
        b_over_w, iy, ix = b_over_w[:, inside], iy[inside], ix[inside]
        one_over_w = b_over_w[0] + b_over_w[1] + b_over_w[2]
        b0, b1, b2 = b_over_w[0] / one_over_w, b_over_w[1] / one_over_w, b_over_w[2] / one_over_w
        clip_z = b0 * v0z + b1 * v1z + b2 * v2z
        clip_w = b0 * v0w + b1 * v1w + b2 * v2w
        z = clip_z / clip_w
        keep = ~((z < -1.0) | (z > 1.0) | (z > z_buffer[iy, ix]))
        iy, ix, z = iy[keep], ix[keep], z[keep]
        z_buffer[iy, ix] = np.minimum(z_buffer[iy, ix], z)  # atomicMin (one thread's pixels are distinct)
        won = z == z_buffer[iy, ix]
        px_triangle_ids[iy[won], ix[won]] = triangle_id
        px_barycentric_coordinates[iy[won], ix[won]] = np.stack([b0[keep], b1[keep], b2[keep]], -1)[won]
    return px_triangle_ids, px_barycentric_coordinates, z_buffer


# ---- the comparison ------------------------------------------------------------------------------------------
def posed_face(model: ParametricFaceModel) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space (1, N, 3) and camera-space (1, N, 3) float64 vertices of a turned, tilted, shifted face with the
    jaw open and some identity and expression."""
    g = torch.Generator().manual_seed(2)
    parts = model.coeff_slices
    coeffs = torch.zeros(1, model.num_coeffs, dtype=torch.float64)
    coeffs[0, parts["id"]] = 0.5 * torch.randn(80, generator=g, dtype=torch.float64)
    coeffs[0, parts["exp"]] = 0.3 * torch.randn(64, generator=g, dtype=torch.float64)
    coeffs[0, parts["exp"].start] = -3.0
    coeffs[0, parts["angle"]] = torch.tensor([0.12, -0.35, 0.08], dtype=torch.float64)
    coeffs[0, parts["trans"]] = torch.tensor([0.1, -0.05, 0.2], dtype=torch.float64)
    split = model.split_coeff(coeffs)
    world = model.transform(model.compute_shape(split["id"], split["exp"]), model.compute_rotation(split["angle"]),
                            split["trans"])
    return world, model.to_camera(world)


def compare(model: ParametricFaceModel, camera: torch.Tensor, official: tuple[np.ndarray, ...]) -> dict[str, float]:
    """Ours (``fitting.screen_vertices`` at the fitting's size, ``rasterize``) against the kernel's fragments:
    ``outside_band`` pixels that differ in coverage or face index other than where the kernel's triangle only
    covers the centre thanks to its tolerance (smallest barycentric < 0); ``ties`` the pixels that differ there;
    ``bary`` max |perspective-corrected ours - kernel| where the face index agrees; ``tie_point`` the largest
    distance between the two 3D points at the ties, over the face's width."""
    ids, bary, _ = official
    covered = np.clip(np.sum(2.0 * bary, axis=-1), 0.0, 1.0) > 0  # Rasterizer.forward's alphas
    faces = model.tensor("face_buf")
    size = FitSettings().size_for(model)
    fragments = rasterize(fitting.screen_vertices(model, camera, size), faces, size, size)
    mask, face = fragments.mask[0].numpy(), fragments.face_index[0].numpy()
    triangles = faces.numpy()
    ours_corners = triangles[np.where(mask, face, 0)]  # (H, W, 3)
    points = camera[0].numpy()
    with np.errstate(invalid="ignore", divide="ignore"):  # background pixels: 0 / 0
        corrected = fragments.barycentric[0].numpy() / points[ours_corners, 2]
        corrected /= corrected.sum(-1, keepdims=True)
    differs = (covered != mask) | (covered & mask & (face != ids))
    band = covered & (bary.min(-1) < 0)
    same = covered & mask & (face == ids)
    ties = differs & band & mask
    kernel_point = (bary[..., None] * points[triangles[ids]]).sum(-2)
    ours_point = (corrected[..., None] * points[ours_corners]).sum(-2)
    width = float(np.ptp(points[:, 0]))
    return {"outside_band": int((differs & ~band).sum()), "ties": int(differs.sum()), "covered": int(covered.sum()),
            "bary": float(np.abs(corrected - bary)[same].max()),
            "tie_point": float(np.linalg.norm(kernel_point - ours_point, axis=-1)[ties].max(initial=0.0)) / width}


@pytest.mark.numerics
def test_rasterizer_renders_the_official_kernels_pixels(folder, monkeypatch):
    model = ParametricFaceModel(folder, convention="audiodvp")
    assert FitSettings().size_for(model) == 256
    world, camera = posed_face(model)
    official = official_rasterize(official_clip_vertices(world[0].numpy()), model.tensor("face_buf").numpy(),
                                  256, 256)
    result = compare(model, camera, official)
    assert result["covered"] > 0.15 * 256 * 256, result  # the face fills a fifth of the image (13,704 pixels)
    assert result["outside_band"] == 0, result
    assert result["ties"] <= MAX_TIES, result
    assert result["bary"] <= BARY_BOUND, result
    assert result["tie_point"] <= TIE_POINT_BOUND, result

    breaks = {  # planted into our projection: where the model puts a vertex, where the fitting renders it
        "half a pixel (to_image with pixel centres at integers)":
            (ParametricFaceModel, "to_image", "return (ndc + 1) * self.center", "return (ndc + 1) * self.center - 0.5"),
        "one row down (screen_vertices)": (fitting, "screen_vertices", "y = uv[..., 1] if", "y = uv[..., 1] + 1 if"),
        "rows flipped (screen_vertices)": (fitting, "screen_vertices", "if model.convention.mirrored_camera",
                                           "if not model.convention.mirrored_camera"),
    }
    for what, (owner, name, old, new) in breaks.items():
        with monkeypatch.context() as patch:
            mutated(patch, owner, name, old, new)
            broken = compare(model, camera, official)
        assert broken["outside_band"] > 100 * MAX_TIES, (what, broken)  # measured 3,236 to 15,813
        assert broken["bary"] > 1e8 * BARY_BOUND, (what, broken)  # measured 0.80 to 0.89


@pytest.mark.parametrize("convention, size", [("audiodvp", 256), ("deep3dfacerecon", 224)])
def test_the_fitting_renders_at_the_conventions_size(folder, convention: str, size: int, monkeypatch):
    """By default ``FitObjective`` renders at the model's screen (AudioDVP's 256 x 256, Deep3DFaceRecon's
    ``rasterize_size`` 224), the size of the crops the face3d step makes for that convention (the portrait crop,
    ``align_img``'s target)."""
    model = ParametricFaceModel(folder, convention=convention)
    assert model.image_size == size == {"audiodvp": CROP_SIZE, "deep3dfacerecon": TARGET_SIZE}[convention]
    settings = FitSettings()
    assert settings.image_size is None and settings.size_for(model) == size
    sizes = []
    render = fitting.render

    def recording(vertices, faces, colours, height, width, *args, **kwargs):
        sizes.append((height, width))
        return render(vertices, faces, colours, height, width, *args, **kwargs)

    monkeypatch.setattr(fitting, "render", recording)
    objective = fitting.FitObjective(model, settings, torch.device("cpu"))
    shared = {name: torch.zeros(1, fitting.block_width(model, name)) for name in fitting.SHARED_BLOCKS}
    frame = torch.zeros(1, fitting.frame_width(model))
    _, terms = objective(shared, frame, torch.zeros(1, size, size, 3), torch.zeros(1, 68, 2), torch.ones(1, dtype=bool))
    assert sizes == [(size, size)] and "photometric" in terms
