"""GSmoothFace's renders and TAFT's morphology-augmented face blending (MAFB), in plain PyTorch.

- ``render_face``: Deep3DFaceRecon-convention coefficients (B, 257) rendered as GSmoothFace's ``MyMeshRender`` does
  (``visualizer/render_utils.py`` + ``visualizer/nvdiffrast_utils.py: MeshRenderer``, Deep3DFaceRecon's camera:
  focal 1015, center 112, near 5, far 15, y negated, 224 x 224, no antialiasing), on nvdiffrast's pixels: column
  centre j + 0.5 = u, row centre i + 0.5 = H - v; depth test on the NDC depth z/w and perspective-correct colours
  (``dr.interpolate``), with our rasterizer. Returns the lit colour (``mask * image``) and the coverage
  (``rast[..., 3] > 0``).
- ``render_pose_free``: the ``need_pose=False`` branch: angle and translation zeroed (``get_coeff_vector(...,
  reset_list=['trans', 'angle'])``), rendered around ``center`` (``MyMeshRender(need_pose=False)``: 256, so 512 x
  512). NB: every official caller passes an ``EasyDict`` as ``need_pose``, which is truthy, so the scripts actually
  render the pose-free face at center 112 (224 x 224): pass ``center=CENTER`` for that.
- MAFB (TAFT ``data/HDTF_demo_dataset.py: HDTFDemoDataset.get_rescaled_mask`` / ``__getitem__``): the coverage
  closed with ``cv2.getStructuringElement(MORPH_ELLIPSE, (21, 21))``, dilated with the (5, 31) ellipse (5 wide, 31
  tall), the dilated mask used for rows >= 128 of 224; mask and render un-cropped into the 512 x 512 frame as
  ``data/face_utils.py: rescale_mask_V2`` does (paste into a black ``trunc(512 s)`` canvas, PIL bicubic resize);
  ``blended = src (1 - m) + render m``. ``exact=True`` reproduces the official 8-bit path (uint8 render and mask,
  PIL's fixed-point bicubic) bit for bit; ``exact=False`` is the same geometry in floats (differentiable).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...face3d import ParametricFaceModel, interpolate, rasterize

FOCAL = 1015.0  # MyMeshRender / Deep3DFaceRecon
CENTER = 112.0  # need_pose=True: 224 x 224
POSE_FREE_CENTER = 256.0  # MyMeshRender(need_pose=False): 512 x 512
Z_NEAR, Z_FAR = 5.0, 15.0
CROP_SIZE = 224  # align_img's target_size; rescale_mask_V2's target_size
FRAME_SIZE = (512, 512)  # (width, height): TAFT's original_shape, hard-coded there
CLOSE_KSIZE = (21, 21)  # cv2 ksize (width, height): closing removes the mouth hole
DILATE_KSIZE = (5, 31)  # 5 wide, 31 tall: the mask grows downwards/upwards (the chin), little sideways
SPLIT_ROW = 128  # half_mask[:128] = 255: closed mask above, dilated mask from this row down
PIL_BITS = 22  # Pillow's Resample.c PRECISION_BITS = 32 - 8 - 2 for 8-bit images
BICUBIC_A = -0.5  # Pillow's bicubic filter


# ---- rendering ------------------------------------------------------------------------------------------------
def ndc_scale(focal: float = FOCAL, center: float = CENTER, near: float = Z_NEAR) -> float:
    """``MeshRenderer.ndc_proj[0, 0]``: n / (tan(fov / 2) n) with fov = 2 atan(center / focal) in degrees, as the
    original computes it, rounded to float32 (its matrix is float32); about focal / center."""
    fov = 2 * np.arctan(center / focal) * 180 / np.pi
    x = np.tan(np.deg2rad(fov * 0.5)) * near
    return float(np.float32(near / x))


def nvdiffrast_screen(camera: torch.Tensor, focal: float = FOCAL, center: float = CENTER, near: float = Z_NEAR,
                      far: float = Z_FAR) -> torch.Tensor:
    """(B, N, 3) rasterizer coordinates of camera-space vertices (z = camera depth) on nvdiffrast's pixels at
    ``int(2 center)``: column = (ndc_x + 1) W / 2, row = (ndc_y + 1) H / 2 with ndc_y = -scale y / z (the y
    negation of ``MeshRenderer``), and the NDC depth z/w (affine in screen space, as nvdiffrast's depth test)."""
    half = int(2 * center) / 2
    scale = ndc_scale(focal, center, near)
    x, y, z = camera.unbind(-1)
    column = (scale * x / z + 1) * half
    row = (-scale * y / z + 1) * half
    depth = (far + near) / (far - near) - 2 * far * near / ((far - near) * z)
    return torch.stack([column, row, depth], dim=-1)


def perspective_interpolate(attributes: torch.Tensor, depth: torch.Tensor, fragments, faces: torch.Tensor
                            ) -> torch.Tensor:
    """(B, H, W, C) perspective-correct mix of per-vertex ``attributes`` (B, N, C) (``dr.interpolate`` with
    nvdiffrast's barycentrics): screen-space mixes of attribute / w and 1 / w divided, w = ``depth`` (B, N)."""
    inverse = 1.0 / depth.unsqueeze(-1)
    mixed = interpolate(torch.cat([attributes * inverse, inverse], dim=-1), fragments, faces)
    weight = torch.where(fragments.mask.unsqueeze(-1), mixed[..., -1:], torch.ones_like(mixed[..., -1:]))
    return mixed[..., :-1] / weight


def render_face(model: ParametricFaceModel, coeffs: torch.Tensor, focal: float = FOCAL, center: float = CENTER
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(image (B, S, S, 3), mask (B, S, S) bool)``, S = int(2 center): the lit colour (``pred_face``, 0 off the
    face, not clamped) and the coverage (``pred_mask``) of Deep3DFaceRecon coefficients (B, 257), as
    ``MyMeshRender.__call__`` renders them (all of ``face_buf``)."""
    size = int(2 * center)
    vertices, _, colour, _ = model.compute_for_render(coeffs)
    faces = model.tensor("face_buf").to(vertices.device)
    fragments = rasterize(nvdiffrast_screen(vertices, focal, center), faces, size, size)
    return perspective_interpolate(colour, vertices[..., 2], fragments, faces), fragments.mask


def render_pose_free(model: ParametricFaceModel, coeffs: torch.Tensor, center: float = POSE_FREE_CENTER
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``need_pose=False`` visualisation: angle and translation set to 0, rendered at int(2 center) (512 by
    default, ``MyMeshRender(need_pose=False)``; ``center=CENTER`` gives the 224 the official scripts produce)."""
    posed = coeffs.clone()
    posed[:, model.coeff_slices["angle"]] = 0
    posed[:, model.coeff_slices["trans"]] = 0
    return render_face(model, posed, FOCAL, center)


def to_levels(image: torch.Tensor) -> torch.Tensor:
    """``(255 * x).astype(np.uint8)`` of ``compute_rendered_image`` as float levels: truncated, clamped to [0, 255]
    (numpy's cast of values >= 256 is undefined; the clamp is ours)."""
    return torch.floor((image * 255).clamp(0, 255))


# ---- morphology -----------------------------------------------------------------------------------------------
def ellipse_kernel(width: int, height: int) -> np.ndarray:
    """``cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, height))``: (height, width) uint8. Row i holds the
    columns c - dx .. c + dx, dx = round(c sqrt((r^2 - (i - r)^2) / r^2)), r = height // 2, c = width // 2."""
    r, c = height // 2, width // 2
    inv_r2 = 1.0 / (r * r) if r else 0.0
    kernel = np.zeros((height, width), np.uint8)
    for i in range(height):
        dy = i - r
        if abs(dy) <= r:
            dx = int(np.rint(c * math.sqrt((r * r - dy * dy) * inv_r2)))  # saturate_cast<int>: round half even
            kernel[i, max(c - dx, 0):min(c + dx + 1, width)] = 1
    return kernel


def dilate(mask: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """``cv2.dilate(mask, kernel)`` of (B, H, W) floats, anchor at the kernel's centre, pixels outside the image
    ignored (OpenCV's default morphology border): out(y, x) = max over kernel (i, j) of mask(y + i - ay, x + j - ax).
    Each kernel row is one contiguous run (an ellipse's), done as a 1-D max-pool, then shifted by its row offset."""
    height, width = kernel.shape
    anchor_y, anchor_x = height // 2, width // 2
    rows, cols = mask.shape[-2:]
    low = torch.finfo(mask.dtype).min
    out = mask.new_full(mask.shape, low)
    flat = mask.reshape(-1, 1, cols)
    for i in range(height):
        ones = np.flatnonzero(kernel[i])
        if len(ones) == 0:
            continue
        first, last = int(ones[0]), int(ones[-1])
        if not kernel[i, first:last + 1].all():
            raise ValueError("each kernel row must be one contiguous run of ones")
        padded = F.pad(flat, (max(anchor_x - first, 0), max(last - anchor_x, 0)), value=low)
        pooled = F.max_pool1d(padded, last - first + 1, stride=1)
        pooled = pooled[..., max(first - anchor_x, 0):][..., :cols].reshape(mask.shape)
        shift = i - anchor_y  # out row y reads row y + shift
        if abs(shift) >= rows:
            continue
        if shift >= 0:
            shifted = F.pad(pooled[..., shift:, :], (0, 0, 0, min(shift, rows)), value=low)[..., :rows, :]
        else:
            shifted = F.pad(pooled[..., :rows + shift, :], (0, 0, min(-shift, rows), 0), value=low)[..., -rows:, :]
        out = torch.maximum(out, shifted)
    return out


def erode(mask: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """``cv2.erode(mask, kernel)``: the minimum over the same offsets, outside ignored."""
    return -dilate(-mask, kernel)


def close(mask: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """``cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)``: dilate, then erode with the same kernel."""
    return erode(dilate(mask, kernel), kernel)


def binary_dilate(mask: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """``dilate`` of a 0/1 mask in one convolution: a pixel is set where the kernel, anchored there, covers a set
    pixel (zero padding: outside ignored). Exact (the counts are small integers)."""
    weight = torch.from_numpy(kernel.astype(np.float32)).to(mask.device)[None, None]
    height, width = kernel.shape
    counts = F.conv2d(mask.reshape(-1, 1, *mask.shape[-2:]).float(), weight, padding=(height // 2, width // 2))
    return (counts > 0.5).to(mask.dtype).reshape(mask.shape)


def binary_erode(mask: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """``erode`` of a 0/1 mask in one convolution: set where the kernel, anchored there, covers only set pixels
    (outside ignored: the border padded with ones)."""
    weight = torch.from_numpy(kernel.astype(np.float32)).to(mask.device)[None, None]
    height, width = kernel.shape
    padded = F.pad(mask.reshape(-1, 1, *mask.shape[-2:]).float(), (width // 2, width // 2, height // 2, height // 2),
                   value=1.0)
    return (F.conv2d(padded, weight) > float(kernel.sum()) - 0.5).to(mask.dtype).reshape(mask.shape)


def mafb_mask(coverage: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """(B, 224, 224) 0/1 floats: TAFT's augmented mask of the coverage (B, 224, 224): closed with the 21 x 21
    ellipse; below row ``SPLIT_ROW`` also dilated with the 5-wide, 31-tall ellipse (on the 0/1 coverage the
    convolution forms of ``dilate`` and ``erode``: three convolutions instead of ~900 row operations)."""
    mask = coverage.to(dtype or (coverage.dtype if coverage.is_floating_point() else torch.float32))
    mask = (mask > 0.5).to(mask.dtype)  # the coverage is 0/1
    close_kernel = ellipse_kernel(*CLOSE_KSIZE)
    closed = binary_erode(binary_dilate(mask, close_kernel), close_kernel)
    dilated = binary_dilate(closed, ellipse_kernel(*DILATE_KSIZE))
    lower = torch.arange(mask.shape[-2], device=mask.device).view(-1, 1) >= SPLIT_ROW
    return torch.where(lower, dilated, closed)


# ---- un-crop --------------------------------------------------------------------------------------------------
def crop_placement(transform_params: torch.Tensor, frame: tuple[int, int] = FRAME_SIZE, crop: int = CROP_SIZE
                   ) -> list[tuple[int, int, int, int]]:
    """(canvas width, canvas height, left, up) per row of ``transform_params`` (B, 5) [W0, H0, s, tx, ty] as TAFT's
    ``rescale_mask_V2`` computes them: s, tx, ty rounded to float32 (``astype(np.float32)``), the frame size
    ``frame`` = TAFT's ``original_shape`` (W0, H0 of the params are not used there), canvas = trunc(W s), the
    offsets (t - W / 2) s taken in float32 (torch tensors there) and the sums truncated toward zero."""
    params = np.asarray(transform_params.detach().cpu().double(), dtype=np.float64).reshape(-1, 5)
    width, height = frame
    placements = []
    for s32, tx, ty in params[:, 2:].astype(np.float32):
        s = np.float64(s32)
        canvas_w, canvas_h = int(np.int32(width * s)), int(np.int32(height * s))
        dx = float(np.float32(np.float32(tx - np.float32(width / 2)) * s32))
        dy = float(np.float32(np.float32(np.float32(height / 2) - ty) * s32))
        left = int(np.int32(canvas_w / 2 - crop / 2 + dx))
        up = int(np.int32(canvas_h / 2 - crop / 2 + dy))
        placements.append((canvas_w, canvas_h, left, up))
    return placements


def bicubic_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float64: Pillow's bicubic (a = -0.5) resampling weights (``Resample.c:
    precompute_coeffs``, no box): support widened by the scale when shrinking, window from trunc(centre - support
    + 0.5), each row normalised."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 2.0 * filter_scale
    weights = np.zeros((out_size, in_size))
    for xx in range(out_size):
        centre = (xx + 0.5) * scale
        x_min = max(int(centre - support + 0.5), 0)
        x_max = min(int(centre + support + 0.5), in_size)
        x = np.abs((np.arange(x_min, x_max) - centre + 0.5) / filter_scale)
        w = np.where(x < 1, ((BICUBIC_A + 2) * x - (BICUBIC_A + 3)) * x * x + 1,
                     np.where(x < 2, (((x - 5) * x + 8) * x - 4) * BICUBIC_A, 0.0))
        total = w.sum()
        weights[xx, x_min:x_max] = w / total if total != 0 else w
    return weights


def pil_fixed_point(weights: np.ndarray) -> np.ndarray:
    """Pillow's 8-bit coefficients (``normalize_coeffs_8bpc``): round half away from zero of w * 2^22."""
    scaled = weights * (1 << PIL_BITS)
    return np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5))


def paste_matrix(weights: np.ndarray, offset: int, crop: int = CROP_SIZE) -> np.ndarray:
    """(out, crop): the columns of ``weights`` (out, canvas) that crop pixel k lands on (canvas index offset + k),
    zero where it falls outside the canvas (PIL's ``paste`` clips)."""
    out = np.zeros((weights.shape[0], crop))
    index = np.arange(crop) + offset
    inside = (index >= 0) & (index < weights.shape[1])
    out[:, inside] = weights[:, index[inside]]
    return out


def uncrop(crops: torch.Tensor, transform_params: torch.Tensor, frame: tuple[int, int] = FRAME_SIZE,
           exact: bool = False) -> torch.Tensor:
    """(B, C, H, W) frames of (B, C, 224, 224) aligned crops: ``rescale_mask_V2`` (paste into a black canvas,
    bicubic resize to ``frame`` = (W, H)). ``exact=True``: the crops are 8-bit levels (0..255) and the result is
    Pillow's fixed-point resampling (horizontal pass, rounded and clipped to 8 bits, then vertical), bit for bit
    (integer sums carried exactly in float64); else the same weights in the crops' dtype, no rounding."""
    width, height = frame
    crop = crops.shape[-1]
    rows, cols = [], []
    for canvas_w, canvas_h, left, up in crop_placement(transform_params, frame, crop):
        wx, wy = bicubic_weights(canvas_w, width), bicubic_weights(canvas_h, height)
        if exact:
            wx, wy = pil_fixed_point(wx), pil_fixed_point(wy)
        cols.append(paste_matrix(wx, left, crop))
        rows.append(paste_matrix(wy, up, crop))
    dtype = torch.float64 if exact else crops.dtype
    ax = torch.as_tensor(np.stack(cols), dtype=dtype, device=crops.device)  # (B, W, 224)
    ay = torch.as_tensor(np.stack(rows), dtype=dtype, device=crops.device)  # (B, H, 224)
    if not exact:
        return torch.einsum("bhi,bcij,bwj->bchw", ay, crops, ax)
    levels = crops.to(torch.float64).round().clamp(0, 255)
    half, unit = float(1 << (PIL_BITS - 1)), float(1 << PIL_BITS)
    horizontal = torch.floor((torch.einsum("bcij,bwj->bciw", levels, ax) + half) / unit).clamp(0, 255)
    vertical = torch.floor((torch.einsum("bhi,bciw->bchw", ay, horizontal) + half) / unit).clamp(0, 255)
    return vertical.to(crops.dtype)


# ---- blending -------------------------------------------------------------------------------------------------
def mafb_blend(source: torch.Tensor, image: torch.Tensor, coverage: torch.Tensor, transform_params: torch.Tensor,
               exact: bool = True) -> dict[str, torch.Tensor]:
    """TAFT's MAFB for (B, 3, H, W) frames ``source`` in [-1, 1] (the dataset's normalisation) and the 224 render
    ``image`` (B, 224, 224, 3) with its ``coverage`` (B, 224, 224): ``{"blended", "rendered" (B, 3, H, W) in
    [-1, 1], "mask" (B, 1, H, W) in [0, 1]}``, blended = source (1 - mask) + rendered mask. ``exact=True`` follows
    the official 8-bit path (uint8 render, 0/255 mask, Pillow's resize); ``exact=False`` stays in floats."""
    frame = (source.shape[-1], source.shape[-2])
    dtype = source.dtype
    render = image.permute(0, 3, 1, 2).to(dtype)
    render = to_levels(render) if exact else render * 255
    mask = mafb_mask(coverage, dtype).unsqueeze(1) * 255
    rendered = uncrop(render, transform_params, frame, exact) / 255
    mask = (uncrop(mask, transform_params, frame, exact) / 255).clamp(0, 1)
    rendered = (rendered - 0.5) / 0.5  # transforms.Normalize((0.5,) * 3, (0.5,) * 3)
    return {"blended": source * (1 - mask) + rendered * mask, "rendered": rendered, "mask": mask}
