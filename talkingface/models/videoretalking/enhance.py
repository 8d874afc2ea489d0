"""VideoReTalking's enhancement chain around its four networks, without OpenCV, basicsr, facexlib or gfpgan
(docs/videoretalking.md, "The enhancement chain").

What the release (OpenTalker/video-retalking d32e8e5, ``inference.py``) runs, and what does it here:

- step 5, ``enhancer.process(img, img, face_enhance=True, possion_blending=False)`` (GPEN's ``FaceEnhancement`` in
  ``third_part/GPEN/gpen_face_enhancer.py``) on every stabilised reference: ``enhance_reference``;
- step 6, ``restorer.enhance(ff, has_aligned=False, only_center_face=True, paste_back=True)`` (``GFPGANer`` of
  ``third_part/GFPGAN/gfpgan/utils.py`` with ``upscale=1`` and no background upsampler, around facexlib 0.2.5's
  ``FaceRestoreHelper``) on every output frame: ``restore_frame``;
- step 6, ``enhancer.process(pp, xf, bbox=c, face_enhance=False, possion_blending=True)``: the face mask it blends
  with (``face_blend_mask``) and the re-warped face it blends (``face_blend``); the Laplacian blend itself is
  ``blending.py``'s.

The two pipelines align faces differently, and both are kept:

- GPEN: every RetinaFace detection with score >= 0.9 (GPEN's ``detect``: ``RetinaFaceDetector.detect``), a
  least-squares similarity (Umeyama) of the five points to GPEN's reference points for 512 x 512 with inner padding
  0.25 (``GPEN_REFERENCE_512``), computed as the release computes it: in float32 from float32 points, the inverse
  fitted separately; the scale's reciprocal in float64, as NumPy 1.23 (the release's pin) promotes a float32 scalar
  divided into a Python float (NumPy 2 would keep float32 and round the scale to 1e-7 of itself).
- facexlib: its own RetinaFace post-processing (no resize however large the frame, score > 0.97, no top-k, NMS without
  the ``+ 1`` pixel convention, as ``torchvision.ops.nms``), the faces whose "eye distance" is under 5 px dropped with
  facexlib 0.2.5's index slip (``norm(y_eye1 - y_eye2, x_eye2 - x_nose)``, fixed in facexlib 0.3.0; kept), the face
  whose box centre is nearest the frame's centre, then ``cv2.estimateAffinePartial2D(points, FFHQ_TEMPLATE_512,
  method=cv2.LMEDS)``: the LMedS search is OpenCV's (its RNG seeded with ``(uint64)-1``, 13 two-point samples, float32
  errors, median, inlier threshold ``(2.5 · 1.4826 · (1 + 5 / 3) · sqrt(median))²``); OpenCV then refines on the
  inliers with 10 Levenberg-Marquardt iterations, which converge on this linear least-squares problem: here the
  least-squares similarity of the inliers is solved in closed form (at most 3.4e-12 apart on the tests' 40 point
  sets, matrices of scale 1.7e3: 2e-15 of it).

OpenCV, written out (each equal to OpenCV 4.10 where the tests say so):

- ``warp_affine``: ``cv2.warpAffine(..., flags=INTER_LINEAR or INTER_AREA, borderMode=BORDER_CONSTANT)`` bit for bit
  for uint8, float32 and float64 images: the matrix inverted in float64 as OpenCV does, coordinates in 1/1024 px
  rounded half to even then cut to 1/32 px, bilinear weights from OpenCV's table (15-bit fixed point for uint8,
  rounded with ``(v + 2^14) >> 15``; float for the rest, summed in OpenCV's order), the border value where a sample
  leaves the image. OpenCV 4.11 and later warp with a new implementation: OpenCV 5.1 differs from 4.10 by up to 4
  grey levels on 9 % of the pixels of the astronaut's GPEN crop; the release ran with the 4.x of its time.
- ``gaussian_blur_f32``: ``cv2.GaussianBlur(x, (k, k), 0)`` of a float32 image: OpenCV's kernel (its fixed tables for
  k <= 9, else sigma = 0.15 k + 0.35 evaluated as OpenCV does), reflect-101 borders, rows then columns with the
  operation order of OpenCV's AVX2 / AVX-512 kernels (fused multiply-adds emulated in float64): equal to OpenCV 4.10
  on this project's x86 CPUs. OpenCV's SSE-only build rounds each product separately (~1 float32 ulp away).
- the float64 blur of ``mask_sharp`` (sigma 1, 9 x 9): ``face.parsenet.gaussian_blur`` (~1e-16 from OpenCV's);
- ``erode_rect``: ``cv2.erode`` with a k x k box of ones (an empty kernel is OpenCV's 3 x 3 default);
- ``smooth3x3``: ``cv2.filter2D(face, -1, [[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16)`` on uint8: exact sums of
  sixteenths, rounded half to even, reflect-101 borders;
- ``cv2.convertScaleAbs``: ``|x|`` rounded half to even and saturated, float64 input first rounded to float32 (what
  OpenCV's vector loop does for arrays of more than a vector);
- ``cv2.resize`` calls of the release that map 512 to 512 or a frame to its own size are copies and are not repeated.

Quirks of the release kept: GPEN blends every face into ``full_mask`` but only the last face's sharp mask reaches the
final composite (so with several faces only the lowest-scoring one is enhanced, except where the soft masks
overlap); faces whose box is under 100 px on a side get a 3 x 3 blur after GPEN; ``mask_postprocess`` zeroes the
sharp mask's 20-px border before it is used. Fixed: where no face is found the release raises (``UnboundLocalError``
in GPEN's ``process``); here the input comes back unchanged (a debug message says so).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.ndimage
import torch

from ...device import resolve_device
from ...errors import DataError
from ...face.parsenet import PARSENET_LATEST, ParseNet, face_masks, gaussian_blur, load_parsenet
from ...face.retinaface import BGR_MEAN, RETINAFACE_R50, RetinaFace, RetinaFaceDetector, decode_detections
from ...restoration.gfpgan import GFPGAN_V13, GFPGANv1Clean, load_gfpgan
from ...restoration.gfpgan import restore_faces as gfpgan_restore
from ...restoration.gpen import GPEN_BFR_512, FullGenerator, load_gpen
from ...restoration.gpen import restore_faces as gpen_restore

logger = logging.getLogger(__name__)

FACE_SIZE = 512
GPEN_THRESHOLD = 0.9        # FaceEnhancement.threshold (and RetinaFaceDetection.detect's default)
SMALL_FACE = 100            # faces whose box is under this on a side get smooth3x3 after GPEN
FACEXLIB_THRESHOLD = 0.97   # FaceRestoreHelper.get_face_landmarks_5: detect_faces(img, 0.97)
FACEXLIB_NMS = 0.4
EYE_DIST_THRESHOLD = 5      # GFPGANer.enhance: get_face_landmarks_5(..., eye_dist_threshold=5)
FACEXLIB_BORDER = (135, 133, 132)  # align_warp_face's borderValue (BGR grey)
SHARP_SIGMA = 1.0           # process(): cv2.GaussianBlur(mask_sharp, (0, 0), sigmaX=1, sigmaY=1)
SHARP_KSIZE = 9             # OpenCV's size for sigma 1 on float images: round(1 * 4 * 2 + 1) | 1
BBOX_BOTTOM_CUT = 5         # process(possion_blending=True): mask_bbox[y1:y2 - 5, x1:x2] = 1

# align_faces.py: REFERENCE_FACIAL_POINTS of the 96 x 112 crop (eyes, nose, mouth corners)
_GPEN_POINTS_96X112 = np.array([[30.29459953, 51.69630051], [65.53179932, 51.50139999], [48.02519989, 71.73660278],
                                [33.54930115, 92.3655014], [62.72990036, 92.20410156]])
# facexlib FaceRestoreHelper.face_template: FFHQ's five points at 512 x 512 (crop_ratio (1, 1))
FFHQ_TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                              [201.26117, 371.41043], [313.08905, 371.15118]])


def _gpen_reference_points(size: int = FACE_SIZE) -> np.ndarray:
    """``get_reference_facial_points((size, size), inner_padding_factor=0.25, outer_padding=(0, 0),
    default_square=True)`` in the release's float64 steps: the 96 x 112 points moved 8 px right (the crop made
    square, 112 x 112), 28 px right and down (0.25 padding on each side: 168 x 168), scaled by size / 168."""
    points = _GPEN_POINTS_96X112 + np.array([8.0, 0.0])
    points = points + 112 * 0.25 * 2 / 2
    return points * (float(size) / 168)


GPEN_REFERENCE_512 = _gpen_reference_points()


# ---- the networks ---------------------------------------------------------------------------------------------
@dataclass
class EnhancementNets:
    """The enhancement chain's networks; any may be missing (its step is then skipped). ``detector`` finds faces
    for all three steps (GPEN's and facexlib's post-processing of the same RetinaFace-R50)."""

    detector: RetinaFaceDetector | None = None
    gpen: FullGenerator | None = None
    gfpgan: GFPGANv1Clean | None = None
    parsenet: ParseNet | None = None

    @classmethod
    def from_networks(cls, detector: RetinaFaceDetector | RetinaFace | None = None, gpen: FullGenerator | None = None,
                      gfpgan: GFPGANv1Clean | None = None, parsenet: ParseNet | None = None,
                      device: str | torch.device | None = "cpu") -> "EnhancementNets":
        """Built networks (e.g. random weights in the release's layouts), in eval mode; a ``RetinaFace`` module is
        wrapped in a detector on ``device`` (its dtype kept)."""
        if detector is not None and not isinstance(detector, RetinaFaceDetector):
            detector = RetinaFaceDetector.from_network(detector, device)
        return cls(detector, *(net.eval() if net is not None else None for net in (gpen, gfpgan, parsenet)))


_SKIPPED = {
    "detector": "no faces are found, so the reference enhancement (GPEN), the frame restoration (GFPGAN) and the "
                "face-mask blend are all skipped",
    "gpen": "the references are not enhanced (the release's step 5)",
    "gfpgan": "the output frames are not restored with GFPGAN (step 6)",
    "parsenet": "without face masks the reference enhancement and the face-mask blends are skipped",
}
NEEDS = ("gpen", "gfpgan", "parsenet")


def load_enhancement(checkpoint_dir: str | Path = "checkpoints", device: str | torch.device | None = "cpu",
                     need: Sequence[str] = NEEDS) -> EnhancementNets:
    """The released networks found in ``checkpoint_dir`` (``RetinaFace-R50.pth`` always when anything is needed,
    then those of ``need``: ``GPEN-BFR-512.pth``, ``GFPGANv1.3.pth``, ``ParseNet-latest.pth``), loaded strictly on
    ``device``. A missing file is one warning naming it, what is skipped and where it comes from; a file that is
    present but does not load raises ``CheckpointError``."""
    unknown = set(need) - set(NEEDS)
    if unknown:
        raise ValueError(f"load_enhancement: need takes {NEEDS}, got {sorted(unknown)}")
    directory = Path(checkpoint_dir)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    nets = EnhancementNets()
    if not need:
        return nets
    loaders = {"detector": (RETINAFACE_R50, lambda path: RetinaFaceDetector(path, device)),
               "gpen": (GPEN_BFR_512, lambda path: load_gpen(path, device)),
               "gfpgan": (GFPGAN_V13, lambda path: load_gfpgan(path, device)),
               "parsenet": (PARSENET_LATEST, lambda path: load_parsenet(path, device))}
    for name in ("detector", *[n for n in NEEDS if n in need]):
        weights, load = loaders[name]
        path = directory / weights.filename
        if not path.is_file():
            logger.warning("%s not found at %s: %s; get it from %s (see checkpoints/README.md)", weights.filename,
                           path, _SKIPPED[name], weights.source)
            continue
        setattr(nets, name, load(path))
    return nets


# ---- OpenCV operations, written out -----------------------------------------------------------------------------
def _invert(matrix: np.ndarray) -> np.ndarray:
    """``cv2.invertAffineTransform`` of a (2, 3) matrix in float64 (also what ``cv2.warpAffine`` does to its matrix
    without ``WARP_INVERSE_MAP``), as six numbers."""
    m = np.asarray(matrix, dtype=np.float64).reshape(6)
    det = m[0] * m[4] - m[1] * m[3]
    det = 1.0 / det if det != 0 else 0.0
    a11, a22, a12, a21 = m[4] * det, m[0] * det, -m[1] * det, -m[3] * det
    return np.array([a11, a12, -a11 * m[2] - a12 * m[5], a21, a22, -a21 * m[2] - a22 * m[5]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """``cv2.invertAffineTransform(matrix)``: the (2, 3) float64 inverse."""
    return _invert(matrix).reshape(2, 3)


def _bilinear_tables() -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's INTER_LINEAR weight tables for the 32 x 32 sub-pixel positions ``(fy, fx)``: float
    ``[(1-fy)(1-fx), (1-fy)fx, fy(1-fx), fy fx]`` and its 15-bit fixed-point twin (1.0 saturates to 32767 and
    OpenCV adds the missing unit to the last weight)."""
    frac = np.arange(32, dtype=np.float32) * np.float32(1 / 32)
    axis = np.stack([np.float32(1) - frac, frac], axis=1)
    weights = (axis[:, None, :, None] * axis[None, :, None, :]).reshape(32 * 32, 4)
    fixed = np.minimum(np.rint(weights.astype(np.float64) * 32768), 32767).astype(np.int32)
    fixed[:, 3] += 32768 - fixed.sum(axis=1)
    return weights, fixed


_WEIGHTS_F32, _WEIGHTS_FIXED = _bilinear_tables()


def _warp_region(forward: np.ndarray, src_shape: tuple[int, int], dst_shape: tuple[int, int]) -> tuple[slice, slice]:
    """The rows and columns of the output that can sample the image: the image's rectangle grown by one pixel,
    mapped by ``forward`` (source -> output), plus a 2 px margin. Outside it every sample leaves the image."""
    height, width = src_shape
    corners = np.array([[-1.0, -1.0], [width, -1.0], [-1.0, height], [width, height]])
    mapped = corners @ forward[:, :2].T + forward[:, 2]
    if not np.all(np.isfinite(mapped)):
        return slice(0, dst_shape[0]), slice(0, dst_shape[1])
    x0, y0 = np.floor(mapped.min(axis=0)) - 2
    x1, y1 = np.ceil(mapped.max(axis=0)) + 3
    rows = slice(int(np.clip(y0, 0, dst_shape[0])), int(np.clip(y1, 0, dst_shape[0])))
    cols = slice(int(np.clip(x0, 0, dst_shape[1])), int(np.clip(x1, 0, dst_shape[1])))
    return rows, cols


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int],
                border_value: float | Sequence[float] = 0.0, inverse_map: bool = False) -> np.ndarray:
    """``cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
    borderValue=border_value)`` of OpenCV 4.x (<= 4.10), bit for bit: ``image`` (H, W) or (H, W, C) uint8, float32
    or float64; ``size = (width, height)``; ``matrix`` maps image pixels to output pixels (or the reverse with
    ``inverse_map``, ``WARP_INVERSE_MAP``). ``INTER_AREA`` (``flags=3``, GPEN's) is the same in ``warpAffine``."""
    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.float32, np.float64) or image.ndim not in (2, 3):
        raise DataError(f"warp_affine takes (H, W) or (H, W, C) uint8/float32/float64 images, got {image.dtype} "
                        f"{image.shape}")
    width, height = (int(s) for s in size)
    planes = image if image.ndim == 3 else image[..., None]
    src_h, src_w, channels = planes.shape
    given = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
    m = given.reshape(6) if inverse_map else _invert(given)
    forward = invert_affine(given) if inverse_map else given
    values = np.broadcast_to(np.asarray(border_value, dtype=np.float64), (channels,))
    if image.dtype == np.uint8:
        cval = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    else:
        cval = values.astype(image.dtype)
    out = np.empty((height, width, channels), dtype=image.dtype)
    out[...] = cval
    rows, cols = _warp_region(forward, (src_h, src_w), (height, width))
    if rows.start < rows.stop and cols.start < cols.stop:
        out[rows, cols] = _warp_block(planes, m, rows, cols, cval)
    return out if image.ndim == 3 else out[..., 0]


def _warp_block(planes: np.ndarray, m: np.ndarray, rows: slice, cols: slice, cval: np.ndarray) -> np.ndarray:
    """OpenCV's WarpAffineInvoker + remapBilinear for the output pixels ``rows`` x ``cols``; ``m`` maps output to
    image pixels."""
    xs = np.arange(cols.start, cols.stop, dtype=np.float64)
    ys = np.arange(rows.start, rows.stop, dtype=np.float64)
    # fixed point: 1/1024 px rounded half to even (cvRound), + half a 1/32 step, then cut to 1/32 px
    adelta = np.rint(m[0] * xs * 1024).astype(np.int64)
    bdelta = np.rint(m[3] * xs * 1024).astype(np.int64)
    x0 = np.rint((m[1] * ys + m[2]) * 1024).astype(np.int64) + 16
    y0 = np.rint((m[4] * ys + m[5]) * 1024).astype(np.int64) + 16
    fx = (x0[:, None] + adelta[None, :]) >> 5
    fy = (y0[:, None] + bdelta[None, :]) >> 5
    sx = np.clip(fx >> 5, -32768, 32767)
    sy = np.clip(fy >> 5, -32768, 32767)
    table = (fy & 31) * 32 + (fx & 31)
    src_h, src_w = planes.shape[:2]

    def tap(dy: int, dx: int) -> np.ndarray:
        yy, xx = sy + dy, sx + dx
        inside = (xx >= 0) & (xx < src_w) & (yy >= 0) & (yy < src_h)
        pixels = planes[np.clip(yy, 0, src_h - 1), np.clip(xx, 0, src_w - 1)]
        return np.where(inside[..., None], pixels, cval)

    taps = (tap(0, 0), tap(0, 1), tap(1, 0), tap(1, 1))
    if planes.dtype == np.uint8:
        weights = _WEIGHTS_FIXED[table]
        total = sum(t.astype(np.int32) * weights[..., k:k + 1] for k, t in enumerate(taps))
        return np.clip((total + (1 << 14)) >> 15, 0, 255).astype(np.uint8)
    weights = _WEIGHTS_F32[table].astype(planes.dtype)
    total = taps[0] * weights[..., 0:1]
    for k in (1, 2, 3):
        total = total + taps[k] * weights[..., k:k + 1]
    return total


def gaussian_kernel_cv(ksize: int, sigma: float = 0.0) -> np.ndarray:
    """``cv2.getGaussianKernel(ksize, sigma)`` as float64: OpenCV's fixed kernels for odd sizes up to 9 when
    ``sigma <= 0``, else ``exp(-x^2 / (2 sigma^2))`` normalised, sigma = 0.15 ksize + 0.35 (one rounding) for
    ``sigma <= 0``, the sums in OpenCV's order (round to float32 for its float32 kernel)."""
    fixed = {1: [1.0], 3: [0.25, 0.5, 0.25], 5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
             7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125],
             9: [v / 256 for v in (4, 13, 30, 51, 60, 51, 30, 13, 4)]}
    if ksize < 1:
        raise ValueError(f"gaussian_kernel_cv: ksize must be >= 1, got {ksize}")
    if sigma <= 0 and ksize in fixed:
        return np.array(fixed[ksize])
    sigma = sigma if sigma > 0 else float(Fraction(ksize) * Fraction(0.15) + Fraction(0.35))
    scale = -0.125 / (sigma * sigma)  # OpenCV steps x by 2 (odd and even sizes alike): (2x)^2 / 8 = x^2 / 2
    half = (ksize - 1) // 2
    values = [float(np.exp(float(x * x) * scale)) for x in range(1 - ksize, 1 - ksize + 2 * half, 2)]
    total = 0.0
    for value in values:
        total += value
    total = total * 2 + 1 + (1 if ksize % 2 == 0 else 0)
    unit = 1.0 / total
    side = [value * unit for value in values]
    return np.array(side + [unit] * (2 - ksize % 2) + side[::-1])


def _fma32(acc: np.ndarray, x: np.ndarray, k: float) -> np.ndarray:
    """float32 ``fma(x, k, acc)`` (one rounding), emulated in float64 (exact products of float32 numbers)."""
    return (acc.astype(np.float64) + x.astype(np.float64) * np.float64(k)).astype(np.float32)


def gaussian_blur_f32(image: np.ndarray, ksize: int) -> np.ndarray:
    """``cv2.GaussianBlur(image, (ksize, ksize), 0)`` of a 2-D float32 image (BORDER_DEFAULT = reflect-101), in
    the operation order of OpenCV 4.10's AVX2 / AVX-512 code: rows with its symmetric 3- and 5-tap kernels
    (``centre * k0``, then the pairs) or a left-to-right chain of fused multiply-adds, then columns from the centre
    row outwards in symmetric pairs. Only the bounding box of the non-zero pixels (grown by half the kernel and
    one pixel) is computed: elsewhere every sum is exactly 0, as OpenCV's."""
    image = np.asarray(image, dtype=np.float32)
    if ksize == 1:
        return image.copy()
    if ksize % 2 == 0:
        raise ValueError(f"gaussian_blur_f32 takes odd sizes, got {ksize}")
    kernel = gaussian_kernel_cv(ksize).astype(np.float32)
    half = ksize // 2
    out = np.zeros_like(image)
    nonzero = np.argwhere(image != 0)
    if nonzero.size == 0:
        return out
    (r0, c0), (r1, c1) = nonzero.min(axis=0), nonzero.max(axis=0) + 1
    # one more than half a kernel: reflect-101 at a cut edge then mirrors zeros only
    r0, c0 = max(r0 - half - 1, 0), max(c0 - half - 1, 0)
    r1, c1 = min(r1 + half + 1, image.shape[0]), min(c1 + half + 1, image.shape[1])
    out[r0:r1, c0:c1] = _separable_blur(image[r0:r1, c0:c1], kernel)
    return out


def _reflect_pad(x: np.ndarray, pad: int, axis: int) -> np.ndarray:
    """reflect-101 padding along ``axis``, repeated for pads wider than the array (OpenCV's borderInterpolate)."""
    n = x.shape[axis]
    index = np.arange(-pad, n + pad)
    if n == 1:
        index = np.zeros_like(index)
    else:
        period = 2 * (n - 1)
        index = np.abs((index + period) % period)
        index = np.where(index >= n, period - index, index)
    return np.take(x, index, axis=axis)


def _separable_blur(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    ksize, half = len(kernel), len(kernel) // 2
    height, width = x.shape
    padded = _reflect_pad(x, half, axis=1)
    column = [padded[:, i:i + width] for i in range(ksize)]  # column[half + d]: the pixel d to the right
    if ksize == 3:
        rows = column[1] * kernel[1]
        rows = _fma32(rows, column[0] + column[2], kernel[2])
    elif ksize == 5:
        rows = (column[1] + column[3]) * kernel[3]
        rows = _fma32(rows, column[2], kernel[2])
        rows = _fma32(rows, column[0] + column[4], kernel[4])
    else:
        rows = column[0] * kernel[0]
        for i in range(1, ksize):
            rows = _fma32(rows, column[i], kernel[i])
    padded = _reflect_pad(rows, half, axis=0)
    line = [padded[i:i + height] for i in range(ksize)]
    out = line[half] * kernel[half]
    for d in range(1, half + 1):
        out = _fma32(out, line[half + d] + line[half - d], kernel[half + d])
    return out


def erode_rect(image: np.ndarray, ksize: int) -> np.ndarray:
    """``cv2.erode(image, np.ones((ksize, ksize), np.uint8))`` of a 2-D image: the minimum over the box
    ``[-ksize // 2, ksize - 1 - ksize // 2]`` in both directions (OpenCV's default anchor), nothing taken from
    outside the image; ``ksize`` 0 is OpenCV's default 3 x 3."""
    ksize = 3 if ksize <= 0 else int(ksize)
    out = np.asarray(image)
    for axis in (0, 1):
        out = scipy.ndimage.minimum_filter1d(out, ksize, axis=axis, mode="constant", cval=np.inf)
    return out


def smooth3x3(image: np.ndarray) -> np.ndarray:
    """GPEN's small-face filter, ``cv2.filter2D(image, -1, [[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16)`` of a uint8
    (H, W, C) image: exact sums of sixteenths, rounded half to even, reflect-101 borders."""
    padded = np.pad(np.asarray(image).astype(np.int64), ((1, 1), (1, 1), (0, 0)), mode="reflect")
    height, width = image.shape[:2]
    taps = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    total = sum(taps[i, j] * padded[i:i + height, j:j + width] for i in range(3) for j in range(3))
    return np.clip(np.rint(total / 16.0), 0, 255).astype(np.uint8)


def convert_scale_abs(values: np.ndarray) -> np.ndarray:
    """``cv2.convertScaleAbs(values)``: ``|x|`` rounded half to even and saturated to uint8, float64 first rounded
    to float32 (OpenCV's vector loop)."""
    x = np.abs(np.asarray(values).astype(np.float32))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# ---- alignment ---------------------------------------------------------------------------------------------------
def _fma(a: float, b: float, c: float) -> float:
    """``a * b + c`` rounded once (to float64)."""
    return float(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)))


def _outer_sum32(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float32 ``a.T @ b`` for (N, 2) float32 arrays in the order of OpenBLAS's x86 kernels (which NumPy's matmul
    calls in the release): the first product rounded, then one fused multiply-add per row (each rounded once to
    float32). Written out so that the result does not depend on the BLAS build or the CPU."""
    out = np.empty((a.shape[1], b.shape[1]), np.float32)
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            total = np.float32(float(a[0, i]) * float(b[0, j]))
            for k in range(1, len(a)):
                total = np.float32(_fma(a[k, i], b[k, j], total))
            out[i, j] = total
    return out


def _rotate64(rotation: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """float64 ``rotation @ vector`` (2 x 2 by 2) in OpenBLAS's x86 order: ``fma(r0, v0, r1 * v1)`` per row."""
    v0, v1 = float(vector[0]), float(vector[1])
    return np.array([_fma(rotation[i, 0], v0, float(rotation[i, 1]) * v1) for i in range(2)])


def _umeyama32(src: np.ndarray, dst: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, float]:
    """The least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991) from float32 points, in the dtypes
    GPEN's ``_umeyama`` computes it (means, covariance, SVD and variance in float32; rotation, scale and
    translation in float64) under NumPy 1.23: ``(matrix (2, 3) float64, scale)``. ``scale`` given: not estimated.
    The two products NumPy hands to BLAS are written out in the order of OpenBLAS's x86 kernels (fused
    multiply-adds); the 2 x 2 SVD, determinant and rank are LAPACK's, as in the release."""
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centred, dst_centred = src - src_mean, dst - dst_mean
    covariance = _outer_sum32(dst_centred, src_centred) / np.float32(len(src))
    signs = np.ones(2)
    if np.linalg.det(covariance) < 0:
        signs[1] = -1
    u, singular, vt = np.linalg.svd(covariance)
    rank = np.linalg.matrix_rank(covariance)
    if rank == 0:
        return np.full((2, 3), np.nan), float("nan")
    homogeneous = np.eye(3)
    if rank == 1:  # one degenerate direction: a proper rotation whatever det(covariance) says
        if np.linalg.det(u) * np.linalg.det(vt) > 0:
            homogeneous[:2, :2] = u @ vt
        else:
            homogeneous[:2, :2] = u @ np.diag([1.0, -1.0]) @ vt
    else:
        homogeneous[:2, :2] = u @ np.diag(signs) @ vt
    if scale is None:
        scale = 1.0 / np.float64(src_centred.var(axis=0).sum()) * (singular @ signs)
    homogeneous[:2, 2] = dst_mean - scale * _rotate64(homogeneous[:2, :2], src_mean)
    homogeneous[:2, :2] *= scale
    return homogeneous[:2].copy(), scale


def gpen_alignment(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GPEN's ``warp_and_crop_face`` matrices for five (x, y) points (``(5, 2)``, rounded to float32 as GPEN does)
    and ``GPEN_REFERENCE_512``: ``(matrix, inverse)``, (2, 3) float64, image -> crop and crop -> image; the inverse
    is its own fit (reference to points, scale fixed to 1 / s), not the matrix inverted."""
    # GPEN holds the points as (2, 5) rows of x and y and transposes them: the same memory layout here
    points = np.ascontiguousarray(np.asarray(landmarks, dtype=np.float32).reshape(5, 2).T).T
    reference = GPEN_REFERENCE_512.astype(np.float32)
    matrix, scale = _umeyama32(points, reference)
    inverse, _ = _umeyama32(reference, points, scale=1.0 / scale)
    return matrix, inverse


class _CvRng:
    """cv::RNG: multiply-with-carry, ``state = (uint32) state * 4164903690 + (state >> 32)``."""

    def __init__(self, state: int = 2**64 - 1):
        self.state = state

    def next(self) -> int:
        self.state = ((self.state & 0xFFFFFFFF) * 4164903690 + (self.state >> 32)) & 0xFFFFFFFFFFFFFFFF
        return self.state & 0xFFFFFFFF

    def uniform(self, low: int, high: int) -> int:
        return low if low == high else self.next() % (high - low) + low


def _two_point_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(a, b, tx, ty) of the similarity [[a, -b, tx], [b, a, ty]] mapping two points exactly (float64)."""
    (x1, y1), (x2, y2) = src.astype(np.float64)
    (u1, v1), (u2, v2) = dst.astype(np.float64)
    dx, dy, du, dv = x1 - x2, y1 - y2, u1 - u2, v1 - v2
    norm = 1.0 / (dx * dx + dy * dy)
    a, b = (du * dx + dv * dy) * norm, (dv * dx - du * dy) * norm
    return np.array([a, b, u1 - (a * x1 - b * y1), v1 - (b * x1 + a * y1)])


def _similarity_errors(params: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """OpenCV's float32 squared reprojection errors of the model (its numbers rounded to float32 first)."""
    a, b, tx, ty = params.astype(np.float32)
    x, y = src[:, 0], src[:, 1]
    du = a * x + -b * y + tx - dst[:, 0]
    dv = b * x + a * y + ty - dst[:, 1]
    return du * du + dv * dv


def _least_squares_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(a, b, tx, ty) minimising the squared distances (closed form about the centroids, float64)."""
    src, dst = src.astype(np.float64), dst.astype(np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    p, q = src - src_mean, dst - dst_mean
    norm = np.sum(p * p)
    a = np.sum(p[:, 0] * q[:, 0] + p[:, 1] * q[:, 1]) / norm
    b = np.sum(p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]) / norm
    return np.array([a, b, dst_mean[0] - (a * src_mean[0] - b * src_mean[1]),
                     dst_mean[1] - (b * src_mean[0] + a * src_mean[1])])


def estimate_similarity_lmeds(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """``cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)[0]`` for N >= 3 points: (2, 3) float64, or None
    where OpenCV returns None (fewer than 2 inliers). Points are rounded to float32 first, as OpenCV does. The LMedS
    search is OpenCV's (module docstring); the refinement is the closed-form least squares on the inliers, to which
    OpenCV's Levenberg-Marquardt converges."""
    src = np.asarray(src, dtype=np.float32).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float32).reshape(-1, 2)
    count = len(src)
    if count < 3 or len(dst) != count:
        raise ValueError(f"estimate_similarity_lmeds needs N >= 3 point pairs, got {src.shape} and {dst.shape}")
    rng = _CvRng()
    iterations = max(_ransac_iterations(0.99, 0.45, 2, 2000), 3)
    best, best_median = None, np.inf
    for _ in range(iterations):
        first = rng.uniform(0, count)
        second = rng.uniform(0, count)
        while second == first:
            second = rng.uniform(0, count)
        pair = [first, second]
        with np.errstate(divide="ignore", invalid="ignore"):
            model = _two_point_similarity(src[pair], dst[pair])
        if not np.all(np.isfinite(model)):
            continue
        median = float(np.partition(_similarity_errors(model, src, dst), count // 2)[count // 2])
        if median < best_median:
            best, best_median = model, median
    if best is None:
        return None
    sigma = max(2.5 * 1.4826 * (1 + 5.0 / (count - 2)) * np.sqrt(best_median), 0.001)
    inliers = _similarity_errors(best, src, dst) <= np.float32(sigma * sigma)
    if inliers.sum() < 2:
        return None
    a, b, tx, ty = _least_squares_similarity(src[inliers], dst[inliers])
    return np.array([[a, -b, tx], [b, a, ty]])


def _ransac_iterations(confidence: float, outliers: float, points: int, limit: int) -> int:
    """cv::RANSACUpdateNumIters."""
    num = np.log(max(1.0 - confidence, np.finfo(float).tiny))
    denom = 1.0 - (1.0 - outliers) ** points
    if denom < np.finfo(float).tiny:
        return 0
    denom = np.log(denom)
    return limit if denom >= 0 or -num >= limit * -denom else int(np.rint(num / denom))


def facexlib_alignment(landmarks: np.ndarray) -> np.ndarray | None:
    """facexlib's ``align_warp_face`` matrix (image -> 512 crop) for five (x, y) points: LMedS similarity to
    ``FFHQ_TEMPLATE_512`` (both rounded to float32)."""
    return estimate_similarity_lmeds(landmarks, FFHQ_TEMPLATE_512)


def align_face_512(image: np.ndarray, landmarks: np.ndarray, style: str = "gpen"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 512 x 512 face crop of a uint8 BGR image for five (x, y) points: ``(crop, matrix, inverse)``.
    ``style='gpen'``: GPEN's reference points, Umeyama in float32, black border (``warp_and_crop_face``);
    ``'facexlib'``: FFHQ's template, LMedS, grey border (135, 133, 132) (``align_warp_face``); ``inverse`` is then
    ``cv2.invertAffineTransform(matrix)``, which facexlib pastes back with."""
    if style == "gpen":
        matrix, inverse = gpen_alignment(landmarks)
        border: Sequence[float] = (0.0, 0.0, 0.0)
    elif style == "facexlib":
        matrix = facexlib_alignment(landmarks)
        if matrix is None:
            raise DataError("facexlib alignment: the landmarks give no similarity (fewer than two inliers)")
        inverse, border = invert_affine(matrix), FACEXLIB_BORDER
    else:
        raise ValueError(f"align_face_512: style must be 'gpen' or 'facexlib', got {style!r}")
    return warp_affine(image, matrix, (FACE_SIZE, FACE_SIZE), border), matrix, inverse


def paste_face(frame: np.ndarray, restored: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """facexlib's ``paste_faces_to_input_image`` (upscale 1, no parsing) of one restored 512 face: the face and a
    square of ones warped back with ``cv2.invertAffineTransform(matrix)``, the square eroded 2 x 2, then by
    ``2 * (sqrt(area) // 20)`` and blurred with a kernel one wider; ``soft * face + (1 - soft) * frame`` in float32,
    truncated to uint8."""
    frame = np.asarray(frame)
    height, width = frame.shape[:2]
    inverse = invert_affine(matrix)
    face = warp_affine(restored, inverse, (width, height))
    square = warp_affine(np.ones((FACE_SIZE, FACE_SIZE), np.float32), inverse, (width, height))
    square = erode_rect(square, 2)
    pasted = square[:, :, None] * face
    edge = int(np.float64(np.sum(square)) ** 0.5) // 20  # NumPy 1.23: a float32 scalar ** 0.5 is float64
    soft = gaussian_blur_f32(erode_rect(square, edge * 2), edge * 2 + 1)[:, :, None]
    return (soft * pasted + (1 - soft) * frame).astype(np.uint8)


# ---- detection -------------------------------------------------------------------------------------------------
def gpen_faces(detector: RetinaFaceDetector, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The faces GPEN's enhancer uses: ``detect`` (BGR, > 0.9, NMS with the + 1 convention, the > 1500 px shrink)
    and the loop's ``score >= 0.9``: boxes (K, 5) and points (K, 5, 2), best score first."""
    boxes, points = detector.detect(image, color="bgr")
    keep = ~(boxes[:, 4] < GPEN_THRESHOLD)
    return boxes[keep], points[keep]


def _nms_torchvision(dets: np.ndarray, threshold: float) -> np.ndarray:
    """``torchvision.ops.nms`` on float32 (K, 5) rows: areas without the + 1 convention, a box dropped where its IoU
    with a kept one exceeds ``threshold`` (compared in float64); kept indices by descending score."""
    x1, y1, x2, y2, scores = (dets[:, c] for c in range(5))
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        width = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), np.float32(0))
        height = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), np.float32(0))
        inter = width * height
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[~(iou.astype(np.float64) > threshold)]
    return np.asarray(keep, dtype=np.int64)


def facexlib_faces(detector: RetinaFaceDetector, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """facexlib 0.2.5's ``RetinaFace.detect_faces(image, 0.97)`` on a uint8 BGR image with the same network: no
    resize, BGR minus (104, 117, 123), score > 0.97, all candidates sorted by score, ``torchvision.ops.nms`` at 0.4:
    boxes (K, 5) float32 [x1, y1, x2, y2, score] and points (K, 5, 2)."""
    pixels = np.asarray(image, dtype=np.float32) - np.asarray(BGR_MEAN, dtype=np.float32)
    height, width = pixels.shape[:2]
    loc, scores, landmarks = detector.forward(pixels)
    boxes, points, face = decode_detections(loc, scores, landmarks, height, width)
    above = np.where(face > FACEXLIB_THRESHOLD)[0]
    order = face[above].argsort()[::-1]
    boxes, points, face = boxes[above][order], points[above][order], face[above][order]
    dets = np.hstack((boxes, face[:, None])).astype(np.float32, copy=False)
    keep = _nms_torchvision(dets, FACEXLIB_NMS)
    return dets[keep], points[keep].reshape(-1, 5, 2)


def facexlib_center_face(boxes: np.ndarray, points: np.ndarray, height: int, width: int) -> int | None:
    """``get_face_landmarks_5(only_center_face=True, eye_dist_threshold=5)``: drop faces whose "eye distance" is
    under 5 px, computed with facexlib 0.2.5's indices (``norm(y_0 - y_1, x_1 - x_2)`` of the points, kept), then the
    face whose box centre is nearest the image centre (the first of equals). The index into ``boxes``, or None."""
    candidates = []
    for index, (box, pts) in enumerate(zip(boxes, points)):
        eye_dist = np.linalg.norm([pts[0, 1] - pts[1, 1], pts[1, 0] - pts[2, 0]])
        if not eye_dist < EYE_DIST_THRESHOLD:
            candidates.append(index)
    if not candidates:
        return None
    centre = np.array([width / 2, height / 2])
    distances = [np.linalg.norm(np.array([np.float64((boxes[i, 0] + boxes[i, 2])) / 2,
                                          np.float64((boxes[i, 1] + boxes[i, 3])) / 2]) - centre)
                 for i in candidates]
    return candidates[distances.index(min(distances))]


# ---- the three steps --------------------------------------------------------------------------------------------
def _check_image(image: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"{what} takes one (H, W, 3) uint8 BGR image, got {image.dtype} {image.shape}")
    return image


@dataclass
class GpenPass:
    """What GPEN's ``process`` loop leaves: ``soft`` = ``full_mask`` (H, W) float32 (each face's blurred mask,
    warped back, where it exceeds the faces before), ``face`` = ``full_img`` (H, W, 3) uint8 (each face warped back
    where its mask was taken, 0 elsewhere), ``sharp`` (H, W) float64: the last face's sharp mask warped back and
    blurred (sigma 1), ``faces``: how many faces were used."""

    soft: np.ndarray
    face: np.ndarray
    sharp: np.ndarray
    faces: int


def gpen_pass(image: np.ndarray, nets: EnhancementNets, enhance: bool = True) -> GpenPass | None:
    """The loop of GPEN's ``FaceEnhancement.process(img, ...)`` on a uint8 BGR image: per face (score >= 0.9) the
    512 crop, GPEN when ``enhance``, ParseNet's face masks of the (enhanced) crop, everything warped back. None where
    no face is found (the release raises there)."""
    image = _check_image(image, "gpen_pass")
    if nets.detector is None or nets.parsenet is None or (enhance and nets.gpen is None):
        raise DataError("gpen_pass needs the detector, ParseNet and (to enhance) GPEN")
    height, width = image.shape[:2]
    boxes, points = gpen_faces(nets.detector, image)
    soft_frame = np.zeros((height, width), np.float32)
    face_frame = np.zeros_like(image)
    sharp_frame = None
    for box, pts in zip(boxes, points):
        crop, _, inverse = align_face_512(image, pts, "gpen")
        face = gpen_restore(nets.gpen, crop) if enhance else crop
        sharp, soft = face_masks(nets.parsenet, face)
        soft = warp_affine(soft, inverse, (width, height))
        sharp_frame = warp_affine(sharp, inverse, (width, height))
        if enhance and min(box[3] - box[1], box[2] - box[0]) < SMALL_FACE:
            face = smooth3x3(face)
        warped = warp_affine(face, inverse, (width, height))
        update = soft - soft_frame > 0
        soft_frame[update] = soft[update]
        face_frame[update] = warped[update]
    if sharp_frame is None:
        return None
    return GpenPass(soft_frame, face_frame, gaussian_blur(sharp_frame, SHARP_KSIZE, SHARP_SIGMA), len(boxes))


def enhance_reference(image_bgr_u8: np.ndarray, nets: EnhancementNets) -> np.ndarray:
    """Step 5 on one reference (uint8 BGR): ``FaceEnhancement.process(img, img, face_enhance=True,
    possion_blending=False)``: ``convertScaleAbs(img (1 - soft) + faces soft)``, then
    ``convertScaleAbs(img (1 - sharp) + that sharp)``. The input unchanged (a copy) where no face is found or the
    detector, GPEN or ParseNet is missing."""
    image = _check_image(image_bgr_u8, "enhance_reference")
    if nets.detector is None or nets.gpen is None or nets.parsenet is None:
        return image.copy()
    result = gpen_pass(image, nets, enhance=True)
    if result is None:
        logger.debug("enhance_reference: no face found (score >= %.2f); the reference is left as it is "
                     "(the release raises here)", GPEN_THRESHOLD)
        return image.copy()
    soft, sharp = result.soft[:, :, None], result.sharp[:, :, None]
    first = convert_scale_abs(image * (1 - soft) + result.face * soft)
    return convert_scale_abs(image * (1 - sharp) + first * sharp)


@dataclass
class FaceBlend:
    """What step 6's ``process(pp, xf, bbox=c, face_enhance=False, possion_blending=True)`` hands to the Laplacian
    blend before its 512 resize: ``face`` (``full_img``: the frame's faces re-warped, 0 outside their masks),
    ``mask`` float32 (``mask_sharp * mask_bbox`` rounded to float32, or ``full_mask`` without a box), and ``sharp``
    (float64, the blurred sharp mask, before the box) and ``soft`` (``full_mask``)."""

    face: np.ndarray
    mask: np.ndarray
    sharp: np.ndarray
    soft: np.ndarray


def _box_mask(shape: tuple[int, int], bbox: Sequence[int]) -> np.ndarray:
    y1, y2, x1, x2 = (int(v) for v in bbox)
    mask = np.zeros(shape, np.float64)
    mask[y1:y2 - BBOX_BOTTOM_CUT, x1:x2] = 1
    return mask


def face_blend(frame_bgr_u8: np.ndarray, nets: EnhancementNets, bbox: Sequence[int] | None = None
               ) -> FaceBlend | None:
    """The inputs of step 6's final blend for a uint8 BGR frame (``pp``) and the face box ``bbox = (y1, y2, x1,
    x2)`` (``c``): see ``FaceBlend``. None where no face is found (the release raises) or the detector or ParseNet
    is missing."""
    frame = _check_image(frame_bgr_u8, "face_blend")
    if nets.detector is None or nets.parsenet is None:
        return None
    result = gpen_pass(frame, nets, enhance=False)
    if result is None:
        logger.debug("face_blend: no face found (score >= %.2f); nothing to blend (the release raises here)",
                     GPEN_THRESHOLD)
        return None
    if bbox is None:
        mask = result.soft
    else:
        mask = (result.sharp * _box_mask(result.sharp.shape, bbox)).astype(np.float32)
    return FaceBlend(result.face, mask, result.sharp, result.soft)


def face_blend_mask(frame_bgr_u8: np.ndarray, nets: EnhancementNets, bbox: Sequence[int] | None = None
                    ) -> np.ndarray | None:
    """Step 6's blend mask for a uint8 BGR frame: ParseNet's face mask of each face's 512 crop (of the last face,
    as the release), warped back and blurred with sigma 1: (H, W) float64 in [0, 1]; with ``bbox = (y1, y2, x1, x2)``
    times the release's box mask (rows ``y1 .. y2 - 5``); ``np.float32`` of it is what the release blends with.
    None where no face is found or the detector or ParseNet is missing."""
    frame = _check_image(frame_bgr_u8, "face_blend_mask")
    if nets.detector is None or nets.parsenet is None:
        return None
    result = gpen_pass(frame, nets, enhance=False)
    if result is None:
        logger.debug("face_blend_mask: no face found (score >= %.2f)", GPEN_THRESHOLD)
        return None
    return result.sharp if bbox is None else result.sharp * _box_mask(result.sharp.shape, bbox)


def restore_frame(frame_bgr_u8: np.ndarray, nets: EnhancementNets) -> np.ndarray:
    """Step 6's ``GFPGANer.enhance(frame, has_aligned=False, only_center_face=True, paste_back=True)`` with
    ``upscale=1`` on a uint8 BGR frame: facexlib's detection and centre face, the LMedS alignment to FFHQ's template,
    GFPGAN, ``paste_face``. The frame unchanged (a copy) where no face is found or the detector or GFPGAN is
    missing."""
    frame = _check_image(frame_bgr_u8, "restore_frame")
    if nets.detector is None or nets.gfpgan is None:
        return frame.copy()
    boxes, points = facexlib_faces(nets.detector, frame)
    index = facexlib_center_face(boxes, points, *frame.shape[:2])
    matrix = None if index is None else facexlib_alignment(points[index])
    if matrix is None:
        logger.debug("restore_frame: no face found (score > %.2f, eye distance >= %d px); the frame is left as it is",
                     FACEXLIB_THRESHOLD, EYE_DIST_THRESHOLD)
        return frame.copy()
    crop = warp_affine(frame, matrix, (FACE_SIZE, FACE_SIZE), FACEXLIB_BORDER)
    return paste_face(frame, gfpgan_restore(nets.gfpgan, crop), matrix)
