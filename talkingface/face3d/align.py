"""Deep3DFaceRecon's ``align_img`` preprocessing (``util/preprocess.py``): the 224 x 224 crop ``ReconNet`` reads.

Five points are taken from the 68 (``extract_5p``), a least-squares affine camera fits them to the template's 5
points from ``similarity_Lm3D_all.mat`` (``pos_fit``, the original ``POS``: translation t and scale s), the image
is scaled by ``rescale_factor / s`` with PIL's bicubic filter (PIL itself, as the original) and a
``target_size`` square is cut around the face (``resize_n_crop``). Landmarks are in the original's convention:
pixel x to the right, **y up** (``y = H - 1 - row``; ``landmarks_y_up``). numpy and PIL only (no cv2).
docs/face3d.md, "Coefficient regressor (ReconNet) and align_img".
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

try:
    BICUBIC = Image.Resampling.BICUBIC
except AttributeError:  # Pillow < 9.1
    BICUBIC = Image.BICUBIC

TARGET_SIZE = 224.0
RESCALE_FACTOR = 102.0
# 0-based indices into the 68 of extract_5p's points: eye 1 = mean(36, 39), eye 2 = mean(42, 45), nose tip 30,
# mouth corners 48 and 54 (the original's 1-based [31, 37, 40, 43, 46, 49, 55] minus 1), in that output order.
EYE_1 = (36, 39)
EYE_2 = (42, 45)
NOSE_TIP = 30
MOUTH_CORNERS = (48, 54)


def extract_5p(lm: np.ndarray) -> np.ndarray:
    """(68, 2) -> (5, 2): eye centre (mean of 36, 39), eye centre (mean of 42, 45), nose tip (30), mouth corners
    (48, 54). Keeps the input's float dtype (the means are taken in it, as the original's ``np.mean``)."""
    lm = np.asarray(lm)
    if lm.ndim != 2 or lm.shape[0] != 68:
        raise ValueError(f"expected 68 landmarks (68, 2), got {lm.shape}")
    return np.stack([np.mean(lm[list(EYE_1)], axis=0), np.mean(lm[list(EYE_2)], axis=0), lm[NOSE_TIP],
                     lm[MOUTH_CORNERS[0]], lm[MOUTH_CORNERS[1]]], axis=0)


def pos_fit(xp: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float]:
    """The original ``POS``: 2D points ``xp`` (2, N) = P @ [x; 1] for the 3D points ``x`` (3, N), P a 2 x 4 affine
    camera fitted by least squares. Returns t = (P[0, 3], P[1, 3]) (float64, (2,)) and s = the mean norm of the
    two 3-vectors P[0, :3], P[1, :3]."""
    xp = np.asarray(xp, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if xp.ndim != 2 or x.ndim != 2 or xp.shape[0] != 2 or x.shape[0] != 3 or xp.shape[1] != x.shape[1]:
        raise ValueError(f"expected 2D points (2, N) and 3D points (3, N), got {xp.shape} and {x.shape}")
    n = x.shape[1]
    a = np.zeros((2 * n, 8))
    a[0::2, 0:3] = x.T
    a[0::2, 3] = 1
    a[1::2, 4:7] = x.T
    a[1::2, 7] = 1
    b = xp.T.reshape(2 * n)  # x0, y0, x1, y1, ...
    # rcond only decides which singular values count as zero; none does for a face's 5 points, so the solution is
    # the same as the original's (numpy < 2 default rcond=-1).
    k = np.linalg.lstsq(a, b, rcond=None)[0]
    s = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2
    return np.array([k[3], k[7]]), float(s)


def crop_box(size: tuple[int, int], t: np.ndarray, s: float,
             target_size: float = TARGET_SIZE) -> tuple[int, int, int, int]:
    """(w, h, left, up) of ``resize_n_crop``: the image (w0, h0) = ``size`` is resized to (w, h) = trunc(s w0),
    trunc(s h0), and the crop's top-left corner is (left, up), truncated toward zero (not floored) as the
    original's ``astype(np.int32)``; y of ``t`` is up, hence the ``h0 / 2 - t[1]``."""
    w0, h0 = size
    w = int(w0 * s)
    h = int(h0 * s)
    left = int(w / 2 - target_size / 2 + float((t[0] - w0 / 2) * s))
    up = int(h / 2 - target_size / 2 + float((h0 / 2 - t[1]) * s))
    return w, h, left, up


def landmarks_to_crop(lm: np.ndarray, trans_params: np.ndarray, target_size: float = TARGET_SIZE) -> np.ndarray:
    """Landmarks (N, 2) of the original image (y up) -> the crop's (y up), float64, given ``trans_params`` =
    (w0, h0, s, tx, ty): ((x, y) - t + (w0, h0) / 2) s - ((w, h) - target_size) / 2, w = trunc(w0 s)."""
    w0, h0, s, tx, ty = (float(v) for v in np.asarray(trans_params, dtype=np.float64).reshape(5))
    lm = np.asarray(lm, dtype=np.float64)
    w, h = int(w0 * s), int(h0 * s)
    out = np.stack([lm[:, 0] - tx + w0 / 2, lm[:, 1] - ty + h0 / 2], axis=1) * s
    return out - np.array([[w / 2 - target_size / 2, h / 2 - target_size / 2]])


def landmarks_from_crop(lm: np.ndarray, trans_params: np.ndarray, target_size: float = TARGET_SIZE) -> np.ndarray:
    """The inverse of ``landmarks_to_crop``: crop coordinates (y up) back to the original image's (y up)."""
    w0, h0, s, tx, ty = (float(v) for v in np.asarray(trans_params, dtype=np.float64).reshape(5))
    lm = np.asarray(lm, dtype=np.float64)
    w, h = int(w0 * s), int(h0 * s)
    out = (lm + np.array([[w / 2 - target_size / 2, h / 2 - target_size / 2]])) / s
    return out + np.array([[tx - w0 / 2, ty - h0 / 2]])


def landmarks_y_up(lm: np.ndarray, height: int) -> np.ndarray:
    """Image landmarks (x right, y = row, down) -> the original's convention (y = H - 1 - row); its own inverse.
    A copy in the input's dtype (the original flips the array in place: ``lm[:, -1] = H - 1 - lm[:, -1]``)."""
    out = np.array(lm, copy=True)
    out[:, -1] = height - 1 - out[:, -1]
    return out


def _as_pil(image: Any, what: str) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(f"{what}: expected a PIL image or a uint8 array (H, W[, C]), got {array.dtype} "
                         f"{array.shape}")
    return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array)


def resize_n_crop(image: Any, lm: np.ndarray, t: np.ndarray, s: float, target_size: float = TARGET_SIZE,
                  mask: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The original ``resize_n_crop_img``: PIL bicubic resize by ``s`` (to trunc(s w0) x trunc(s h0)), then PIL
    ``crop`` of a ``target_size`` square at ``crop_box``'s corner (outside the image: black); ``mask`` the same.
    Returns the crop (uint8 array), the landmarks in it (float64, y up) and the mask crop (or None)."""
    pil = _as_pil(image, "image")
    w0, h0 = pil.size
    w, h, left, up = crop_box((w0, h0), t, s, target_size)
    box = (left, up, left + target_size, up + target_size)  # PIL rounds the box to integers
    crop = np.asarray(pil.resize((w, h), resample=BICUBIC).crop(box))
    mask_crop = None
    if mask is not None:
        mask_crop = np.asarray(_as_pil(mask, "mask").resize((w, h), resample=BICUBIC).crop(box))
    trans_params = np.array([w0, h0, s, t[0], t[1]], dtype=np.float64)
    return crop, landmarks_to_crop(lm, trans_params, target_size), mask_crop


def align_img(img: Any, lm: np.ndarray, lm3D: np.ndarray, mask: Any = None, target_size: float = TARGET_SIZE,
              rescale_factor: float = RESCALE_FACTOR
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Deep3DFaceRecon's ``align_img``.

    img: PIL image or uint8 (H, W, 3) RGB; lm: (68, 2) or (5, 2) landmarks, x right and **y up** (y = H - 1 -
    row, ``landmarks_y_up``); lm3D: (5, 3) template points (``load_lm3d``); mask: optional PIL image or uint8 array
    of the image's size, cropped the same way.

    Returns ``(trans_params, image, landmarks, mask)``: trans_params float64 (w0, h0, s, tx, ty) with s =
    ``rescale_factor`` / the fitted scale and (tx, ty) the fitted translation (y up); the crop uint8
    (target_size, target_size, C); all given landmarks mapped into the crop (float64, y up); the mask crop or None.
    """
    lm = np.asarray(lm)
    if not np.issubdtype(lm.dtype, np.floating):
        lm = lm.astype(np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] not in (5, 68):
        raise ValueError(f"expected landmarks (68, 2) or (5, 2), got {lm.shape}")
    lm3D = np.asarray(lm3D)
    if lm3D.shape != (5, 3):
        raise ValueError(f"expected the 5 template points (5, 3) (load_lm3d), got {lm3D.shape}")
    pil = _as_pil(img, "image")
    trans_params = align_params(lm, lm3D, pil.size, rescale_factor)
    s, t = float(trans_params[2]), trans_params[3:5]
    crop, lm_new, mask_new = resize_n_crop(pil, lm, t, s, target_size=target_size, mask=mask)
    return trans_params, crop, lm_new, mask_new


def align_params(lm: np.ndarray, lm3D: np.ndarray, size: tuple[int, int],
                 rescale_factor: float = RESCALE_FACTOR) -> np.ndarray:
    """``align_img``'s trans_params (w0, h0, s, tx, ty) from the landmarks alone (y up; 68 or 5 points) and the
    image size (w0, h0): the POS fit of the five points to ``lm3D``, s = ``rescale_factor`` / its scale."""
    lm5p = lm if lm.shape[0] == 5 else extract_5p(lm)
    t, s = pos_fit(lm5p.T, np.asarray(lm3D).T)
    return np.array([size[0], size[1], rescale_factor / s, t[0], t[1]], dtype=np.float64)
