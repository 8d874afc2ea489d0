"""GSmoothFace's renders and TAFT's MAFB (``talkingface/models/gsmoothface/rendering.py``).

Pixels: our projection + rasterizer against a float64 numpy transcription of what Deep3DFaceRecon's / GSmoothFace's
``MeshRenderer`` hands nvdiffrast (``visualizer/nvdiffrast_utils.py``: the float32 ``ndc_projection`` with fov
2 atan(center / 1015), near 5, far 15, times diag(1, -1, -1, 1), y negated, ``rasterize_size = int(2 center)``)
and of nvdiffrast's rasterisation rule: pixel (i, j) sampled at NDC (2 (j + 0.5) / W - 1, 2 (i + 0.5) / H - 1),
covered when its centre is inside the triangle (2D homogeneous edge functions in clip space, inclusive),
perspective-correct barycentrics, the nearest z / w wins; ``dr.interpolate`` mixes the colours with those
barycentrics. Written from the sources, not a fixture of the CUDA kernel's output: cudaraster also snaps vertices to
1/16 px (``CR_SUBPIXEL_LOG2 = 4``) and applies a fill rule at exact edge hits, which moves coverage only for
centres within 1/32 px of an edge; the transcription leaves both out. Measured numbers are in each test.

MAFB: the ellipse kernels are literal arrays read from OpenCV's ``getStructuringElement`` algorithm (and confirmed
with opencv-python 5.1 once, outside the suite: cv2 is no dependency); the morphology against an independent
numpy reading; the un-crop against Pillow itself (TAFT's ``rescale_mask_V2`` is Pillow's paste + bicubic resize,
and Pillow is a dependency) and a hand-computed case.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from breaks import mutated
from talkingface.face3d import ParametricFaceModel, write_standin_bfm
from talkingface.models.gsmoothface import rendering as R

VERTICES = 400
MAX_TIES = 4  # pixels whose centre sits on a shared edge within float64 rounding (measured 0 over 8 poses)
BARY_BOUND = 1e-9  # float64 ratios of edge functions of the same points

# cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (21, 21)): row i has ones at columns 10 - dx .. 10 + dx,
# dx = round(10 sqrt(1 - (i - 10)^2 / 100)) = round(sqrt(100 - (i - 10)^2)).
CLOSE_DX = [0, 4, 6, 7, 8, 9, 9, 10, 10, 10, 10, 10, 10, 10, 9, 9, 8, 7, 6, 4, 0]
# cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 31)) is (31 rows, 5 columns): c = 2, r = 15,
# dx = round(2 sqrt(1 - (i - 15)^2 / 225)): 0 at i = 0, 30; 1 for |i - 15| in 10..14 (0.72 to 1.49); else 2.
DILATE_KERNEL_5x31 = np.array(
    [[0, 0, 1, 0, 0]] + [[0, 1, 1, 1, 0]] * 5 + [[1, 1, 1, 1, 1]] * 19 + [[0, 1, 1, 1, 0]] * 5 + [[0, 0, 1, 0, 0]],
    np.uint8)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ParametricFaceModel:
    path = tmp_path_factory.mktemp("bfm_gsmoothface_render")
    write_standin_bfm(path, VERTICES, raw=False, derived=True)
    return ParametricFaceModel(path)


def posed_coeffs(model: ParametricFaceModel) -> torch.Tensor:
    """(1, 257) float64: a turned, tilted, shifted face with the jaw open, some identity, expression, texture, light."""
    g = torch.Generator().manual_seed(3)
    parts = model.coeff_slices
    coeffs = torch.zeros(1, model.num_coeffs, dtype=torch.float64)
    for name, scale in (("id", 0.5), ("exp", 0.3), ("tex", 0.5), ("gamma", 0.1)):
        width = parts[name].stop - parts[name].start
        coeffs[0, parts[name]] = scale * torch.randn(width, generator=g, dtype=torch.float64)
    coeffs[0, parts["exp"].start] = -3.0
    coeffs[0, parts["angle"]] = torch.tensor([0.1, -0.4, 0.07], dtype=torch.float64)
    coeffs[0, parts["trans"]] = torch.tensor([0.12, -0.08, -1.0], dtype=torch.float64)
    return coeffs


# ---- the transcription ---------------------------------------------------------------------------------------
def official_clip(camera: np.ndarray, center: float) -> np.ndarray:
    """(N, 4) clip coordinates: ``MeshRenderer.forward``'s ``vertex @ ndc_proj.t()`` with its float32 matrix."""
    fov = 2 * np.arctan(center / 1015.0) * 180 / np.pi
    n, f = 5.0, 15.0
    x = np.tan(np.deg2rad(fov * 0.5)) * n
    ndc_projection = np.array([[n / x, 0, 0, 0], [0, n / -x, 0, 0], [0, 0, -(f + n) / (f - n), -(2 * f * n) / (f - n)],
                               [0, 0, -1, 0]]).astype(np.float32)
    ndc_proj = torch.tensor(ndc_projection).matmul(torch.diag(torch.tensor([1., -1, -1, 1]))).double().numpy()
    vertex = np.concatenate([camera, np.ones((len(camera), 1))], axis=1)
    vertex[:, 1] = -vertex[:, 1]
    return vertex @ ndc_proj.T


def official_rasterize(clip: np.ndarray, triangles: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """nvdiffrast's rule in float64, triangles in order: (triangle id + 1 (H, W), 0 uncovered; barycentrics (H, W,
    3), perspective-correct)."""
    ids = np.zeros((size, size), np.int64)
    bary = np.zeros((size, size, 3))
    zbuf = np.full((size, size), np.inf)
    for tri_id, corners in enumerate(triangles):
        (x0, y0, z0, w0), (x1, y1, z1, w1), (x2, y2, z2, w2) = clip[corners]
        m = np.array([[x0, x1, x2], [y0, y1, y2], [w0, w1, w2]])
        if np.linalg.det(m) == 0:
            continue
        inv = np.linalg.inv(m)  # the clip point at w = 1 over the pixel is sum_k lambda_k v_k, lambda = inv (x, y, 1)
        px = np.array([x0 / w0, x1 / w1, x2 / w2])
        py = np.array([y0 / w0, y1 / w1, y2 / w2])
        cols = np.arange(max(math.floor((px.min() + 1) * size / 2 - 0.5), 0),
                         min(math.ceil((px.max() + 1) * size / 2 - 0.5), size - 1) + 1)
        rows = np.arange(max(math.floor((py.min() + 1) * size / 2 - 0.5), 0),
                         min(math.ceil((py.max() + 1) * size / 2 - 0.5), size - 1) + 1)
        ii, jj = (grid.ravel() for grid in np.meshgrid(rows, cols, indexing="ij"))
        ndc = np.stack([2 * (jj + 0.5) / size - 1, 2 * (ii + 0.5) / size - 1, np.ones(len(ii))])
        weights = inv @ ndc
        inside = np.all(weights >= 0, axis=0)
        b = (weights / weights.sum(0))[:, inside]
        ii, jj = ii[inside], jj[inside]
        depth = (b[0] * z0 + b[1] * z1 + b[2] * z2) / (b[0] * w0 + b[1] * w1 + b[2] * w2)
        won = depth < zbuf[ii, jj]
        ii, jj = ii[won], jj[won]
        zbuf[ii, jj] = depth[won]
        ids[ii, jj] = tri_id + 1
        bary[ii, jj] = b[:, won].T
    return ids, bary


def compare(model: ParametricFaceModel, coeffs: torch.Tensor, center: float, pose_free: bool) -> dict[str, float]:
    """Ours (``render_face`` / ``render_pose_free``' fragments) against the transcription: ``differ`` pixels whose
    coverage or triangle differ, ``bary`` max |our perspective-corrected barycentrics - theirs| and ``colour`` max
    |our image - the transcription's interpolated colour| where the triangle agrees."""
    size = int(2 * center)
    if pose_free:
        coeffs = coeffs.clone()
        coeffs[:, model.coeff_slices["angle"]] = 0
        coeffs[:, model.coeff_slices["trans"]] = 0
    camera, _, colour, _ = (t[0].numpy() for t in model.compute_for_render(coeffs))
    triangles = model.tensor("face_buf").numpy()
    ids, bary = official_rasterize(official_clip(camera, center), triangles, size)
    fragments = []
    rasterize = R.rasterize

    def recording(*args, **kwargs):
        fragments.append(rasterize(*args, **kwargs))
        return fragments[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(R, "rasterize", recording)
        image, mask = (R.render_pose_free(model, coeffs, center) if pose_free else R.render_face(model, coeffs,
                                                                                                  center=center))
    face = fragments[0].face_index[0].numpy()
    ours = np.where(mask[0].numpy(), face + 1, 0)
    corner = triangles[np.maximum(face, 0)]
    with np.errstate(invalid="ignore", divide="ignore"):
        corrected = fragments[0].barycentric[0].numpy() / camera[corner, 2]
        corrected /= corrected.sum(-1, keepdims=True)
    same = (ours == ids) & (ids > 0)
    expected = (bary[..., None] * colour[triangles[np.maximum(ids - 1, 0)]]).sum(-2)
    return {"covered": int((ids > 0).sum()), "differ": int((ours != ids).sum()),
            "bary": float(np.abs(corrected - bary)[same].max()),
            "colour": float(np.abs(image[0].numpy() - expected)[same].max()),
            "background": float(np.abs(image[0].numpy()[ids == 0]).max(initial=0.0))}


BREAKS = {
    "half a pixel": ("column = (scale * x / z + 1) * half", "column = (scale * x / z + 1) * half - 0.5"),
    "a row off (H - 1 - v)": ("row = (-scale * y / z + 1) * half", "row = (-scale * y / z + 1) * half - 1"),
    "rows flipped (y not negated)": ("row = (-scale * y / z + 1) * half", "row = (scale * y / z + 1) * half"),
}


@pytest.mark.parametrize("center, pose_free, breaks", [(R.CENTER, False, tuple(BREAKS)),
                                                      (R.POSE_FREE_CENTER, True, ("half a pixel",))])
def test_renders_nvdiffrasts_pixels(model, monkeypatch, center: float, pose_free: bool, breaks: tuple[str, ...]):
    """224 (posed) and the need_pose=False 512 render. Measured (400-vertex stand-in, 733 triangles): 224: 18,504
    pixels covered, 0 differ, perspective-corrected barycentrics 1.9e-13, colours 2.1e-15 (6 other poses: 0 differ,
    barycentrics <= 6.9e-14); 512 pose-free: 23,113 covered, 0 differ, 3.0e-14 and 1.9e-15. Breaks planted into
    ``nvdiffrast_screen``: half a pixel 2,986 (224) / 3,807 (512) pixels differ, a row off 4,567, rows flipped
    20,604; barycentrics off by 0.34 to 0.91."""
    coeffs = posed_coeffs(model)
    result = compare(model, coeffs, center, pose_free)
    assert result["covered"] > 2000, result
    assert result["differ"] <= MAX_TIES, result
    assert result["bary"] <= BARY_BOUND and result["colour"] <= BARY_BOUND, result
    assert result["background"] == 0.0, result
    for what in breaks:
        with monkeypatch.context() as patch:
            mutated(patch, R, "nvdiffrast_screen", *BREAKS[what])
            broken = compare(model, coeffs, center, pose_free)
        assert broken["differ"] > 100 * MAX_TIES, (what, broken)
        assert broken["bary"] > 1e7 * BARY_BOUND, (what, broken)


def test_pose_free_zeroes_pose_and_centres(model):
    """need_pose=False: only angle and translation are reset; at center 256 the image is 512 and the unposed face is
    centred there (its coverage's centroid within a few pixels of 256); at center 112 (what the official scripts
    reach, ``MyMeshRender(opt)`` with a truthy ``opt``) it is the posed render of the zeroed coefficients."""
    coeffs = posed_coeffs(model)
    image, mask = R.render_pose_free(model, coeffs)
    assert image.shape == (1, 512, 512, 3) and mask.shape == (1, 512, 512)
    rows, cols = np.nonzero(mask[0].numpy())
    assert abs(cols.mean() - 256) < 10 and abs(rows.mean() - 256) < 40, (cols.mean(), rows.mean())
    zeroed = coeffs.clone()
    zeroed[:, 224:227] = 0
    zeroed[:, 254:257] = 0
    small, small_mask = R.render_pose_free(model, coeffs, center=R.CENTER)
    direct, direct_mask = R.render_face(model, zeroed)
    assert torch.equal(small, direct) and torch.equal(small_mask, direct_mask)


# ---- MAFB ----------------------------------------------------------------------------------------------------
def test_ellipse_kernels_are_opencvs():
    close = R.ellipse_kernel(*R.CLOSE_KSIZE)
    expected = np.zeros((21, 21), np.uint8)
    for i, dx in enumerate(CLOSE_DX):
        expected[i, 10 - dx:10 + dx + 1] = 1
    assert close.shape == (21, 21) and np.array_equal(close, expected) and close.sum() == 333
    dilate = R.ellipse_kernel(*R.DILATE_KSIZE)
    assert dilate.shape == (31, 5) and np.array_equal(dilate, DILATE_KERNEL_5x31)  # 5 wide, 31 tall
    assert np.array_equal(R.ellipse_kernel(3, 3), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    # break: width and height swapped (31 wide, 5 tall)
    assert not np.array_equal(R.ellipse_kernel(31, 5), DILATE_KERNEL_5x31)


def numpy_morph(mask: np.ndarray, kernel: np.ndarray, op) -> np.ndarray:
    """Independent reading of cv2.dilate / cv2.erode: every kernel offset, outside the image ignored."""
    h, w = kernel.shape
    ay, ax = h // 2, w // 2
    fill = -np.inf if op is np.maximum else np.inf
    padded = np.pad(mask.astype(np.float64), ((0, 0), (ay, h - 1 - ay), (ax, w - 1 - ax)), constant_values=fill)
    out = np.full(mask.shape, fill)
    rows, cols = mask.shape[1:]
    for i, j in zip(*np.nonzero(kernel)):
        out = op(out, padded[:, i:i + rows, j:j + cols])
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_morphology_and_the_row_rule(dtype, monkeypatch):
    rng = np.random.default_rng(5)
    mask = (rng.random((2, 224, 224)) < 0.004).astype(np.float64)
    mask[:, 60:170, 50:180] = 1.0
    mask[:, 140:150, 90:140] = 0.0  # a mouth hole
    k21, k5 = R.ellipse_kernel(21, 21), R.ellipse_kernel(5, 31)
    closed = numpy_morph(numpy_morph(mask, k21, np.maximum), k21, np.minimum)
    dilated = numpy_morph(closed, k5, np.maximum)
    expected = np.concatenate([closed[:, :128], dilated[:, 128:]], axis=1)
    torch_mask = torch.tensor(mask, dtype=dtype)
    assert np.array_equal(R.close(torch_mask, k21).numpy(), closed)
    assert np.array_equal(R.dilate(torch_mask, k5).numpy(), numpy_morph(mask, k5, np.maximum))
    # the convolution forms mafb_mask uses on 0/1 masks: the same sets
    assert np.array_equal(R.binary_erode(R.binary_dilate(torch_mask, k21), k21).numpy(), closed)
    assert np.array_equal(R.binary_dilate(torch_mask, k5).numpy(), numpy_morph(mask, k5, np.maximum))
    result = R.mafb_mask(torch_mask.bool(), dtype)
    assert result.dtype == dtype and np.array_equal(result.numpy(), expected)
    assert (expected[:, 140:150, 90:140] == 1).all()  # the hole is closed
    breaks = {"split at 129": (">= SPLIT_ROW", ">= SPLIT_ROW + 1"),
              "split at 127": (">= SPLIT_ROW", ">= SPLIT_ROW - 1"),
              "closing skipped": ("closed = binary_erode(binary_dilate(mask, close_kernel), close_kernel)",
                                  "closed = mask"),
              "kernel 31 wide": ("ellipse_kernel(*DILATE_KSIZE)", "ellipse_kernel(*DILATE_KSIZE[::-1])")}
    for what, edit in breaks.items():
        with monkeypatch.context() as patch:
            mutated(patch, R, "mafb_mask", *edit)
            broken = R.mafb_mask(torch_mask.bool(), dtype).numpy()
        differ = int((broken != expected).sum())
        assert differ >= 4, (what, differ)  # measured: one row moved 8 / 8, no closing 5,656, 31 wide 2,156


def pil_uncrop(crop: np.ndarray, params: tuple[float, ...]) -> np.ndarray:
    """TAFT ``rescale_mask_V2`` with Pillow, the placement taken from ``crop_placement`` (checked by hand below)."""
    canvas_w, canvas_h, left, up = R.crop_placement(torch.tensor([params]))[0]
    canvas = Image.new("RGB", (canvas_w, canvas_h), (0, 0, 0))
    canvas.paste(Image.fromarray(crop), (left, up))
    return np.array(canvas.resize((512, 512), resample=Image.BICUBIC))


def test_uncrop(monkeypatch):
    # hand-computed placement: s = 0.55 -> canvas trunc(281.6) = 281; left = trunc(140.5 - 112 + (251.25 - 256) 0.55)
    # = trunc(25.8875) = 25; up = trunc(140.5 - 112 + (256 - 262.75) 0.55) = trunc(24.7875) = 24; negative offsets
    # truncate toward zero: s = 0.3, tx = 100 -> trunc(76.5 - 112 - 46.8) = trunc(-82.3) = -82.
    params = torch.tensor([[512, 512, 0.55, 251.25, 262.75], [512, 512, 0.3, 100.0, 420.0]], dtype=torch.float64)
    assert R.crop_placement(params) == [(281, 281, 25, 24), (153, 153, -82, -84)]
    # s = 1: the resize is the identity, so the frame is the crop pasted at (left, up) = (144 + 1, 144 - 2)
    rng = np.random.default_rng(7)
    crop = rng.integers(0, 256, (1, 3, 224, 224)).astype(np.float64)
    frame = R.uncrop(torch.tensor(crop), torch.tensor([[512, 512, 1.0, 257.0, 258.0]]), exact=True).numpy()
    expected = np.zeros((1, 3, 512, 512))
    expected[:, :, 142:366, 145:369] = crop
    assert np.array_equal(frame, expected)
    # Pillow itself, bit for bit, batched, for both placements (one partly off the canvas)
    crops = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    ours = R.uncrop(torch.tensor(crops).permute(0, 3, 1, 2).float(), params, exact=True).permute(0, 2, 3, 1).numpy()
    reference = np.stack([pil_uncrop(crops[b], tuple(params[b].tolist())) for b in range(2)])
    assert np.array_equal(ours, reference)
    # the float path: same weights without 8-bit rounding (nor clipping, which acts at the black canvas' edge): on a
    # smooth image, inside the pasted region, within the rounding of the 8-bit path (measured 0.499)
    smooth = np.repeat(np.linspace(0, 255, 224)[None, None, :, None], 224, axis=3).transpose(0, 1, 3, 2)
    smooth = np.repeat(np.round(smooth), 2, axis=0)
    floats = R.uncrop(torch.tensor(smooth), params).numpy()
    exact = R.uncrop(torch.tensor(smooth), params, exact=True).numpy()
    assert np.abs(floats - exact)[..., 100:400, 100:400].max() <= 1.0
    breaks = {"left floored instead of truncated": ("left = int(np.int32(", "left = int(np.floor("),
              "offset from the frame centre dropped": ("left = int(np.int32(canvas_w / 2 - crop / 2 + dx))",
                                                       "left = int(np.int32(canvas_w / 2 - crop / 2))")}
    for what, edit in breaks.items():
        with monkeypatch.context() as patch:
            mutated(patch, R, "crop_placement", *edit)
            broken = R.uncrop(torch.tensor(crops).permute(0, 3, 1, 2).float(), params, exact=True)
        differ = (broken.permute(0, 2, 3, 1).numpy() != reference).sum()
        assert differ > 10000, (what, differ)
    with monkeypatch.context() as patch:  # the fixed-point rounding of the weights dropped
        mutated(patch, R, "uncrop", "wx, wy = pil_fixed_point(wx), pil_fixed_point(wy)",
                "wx, wy = wx * (1 << PIL_BITS), wy * (1 << PIL_BITS)")
        broken = R.uncrop(torch.tensor(crops).permute(0, 3, 1, 2).float(), params, exact=True)
    assert (broken.permute(0, 2, 3, 1).numpy() != reference).sum() >= 1  # measured 16 values (exact test: any counts)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mafb_blend(model, dtype):
    """The whole blend on a render: the mask is 0 or 1 away from its edges, blended = source where the mask is 0 and
    the un-cropped render where it is 1; both paths agree within a level or so."""
    coeffs = posed_coeffs(model).to(dtype)
    image, coverage = R.render_face(model, coeffs)
    params = torch.tensor([[512, 512, 0.55, 251.25, 262.75]], dtype=dtype)
    source = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype) * 2 - 1
    out = R.mafb_blend(source, image, coverage, params)
    mask, rendered, blended = out["mask"], out["rendered"], out["blended"]
    assert mask.shape == (1, 1, 512, 512) and blended.dtype == dtype
    expected_mask = R.uncrop(R.mafb_mask(coverage, dtype).unsqueeze(1) * 255, params, exact=True) / 255
    assert torch.equal(mask, expected_mask.clamp(0, 1))
    assert torch.equal(blended[:, :, mask[0, 0] == 0], source[:, :, mask[0, 0] == 0])
    assert torch.equal(blended[:, :, mask[0, 0] == 1], rendered[:, :, mask[0, 0] == 1])
    assert (mask == 1).sum() > 10000
    floats = R.mafb_blend(source, image, coverage, params, exact=False)
    # the float path clips only at the end (Pillow clips after each pass), so the mask's edges differ by up to 0.07
    assert (floats["mask"] - mask).abs().max() <= 0.1 and (floats["mask"] - mask).abs().mean() <= 1e-3
