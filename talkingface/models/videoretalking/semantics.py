"""D-Net's driving input: the 73 x 26 window of 3DMM semantics around a frame, and the expression templates that
neutralise it (the release's ``utils/inference_utils.py``: ``obtain_seq_index``, ``transform_semantic``,
``find_crop_norm_ratio``, and ``inference.py``'s step 3).

Per frame the release keeps a 262-vector: the 257 Deep3DFaceRecon coefficients followed by ``align_img``'s
``trans_params`` (w0, h0, s, tx, ty) — ``talkingface.data.face3d_step.Face3dResult.with_crop_params()``. The driving
features are expression (80:144), angles (224:227), translation (254:257) and the crop's s, tx, ty (259:262), over
frames ``index - 13 .. index + 12`` clamped to the video; the crop scale column may be rescaled by
``crop_norm_ratio``; the first 64 rows (the expression) are then replaced by the template for the whole window.
"""
from __future__ import annotations

import numpy as np
import torch

HALF_WINDOW = 13  # frames index - 13 .. index + 12: 26 (PIRender uses 27)
SEMANTIC_DIM = 262
EXPRESSION = slice(80, 144)
ANGLES = slice(224, 227)
TRANSLATION = slice(254, 257)
CROP = slice(259, 262)  # s, tx, ty of trans_params
DRIVING_DIM = 73
RATIO_ALPHA = 0.3  # find_crop_norm_ratio's weight of the expression distance (1 - alpha: the angles)


def window_indices(index: int, frames: int, half: int = HALF_WINDOW) -> np.ndarray:
    """``obtain_seq_index``: frames ``index - half .. index + half - 1``, each clamped to ``[0, frames - 1]``."""
    return np.clip(np.arange(index - half, index + half), 0, frames - 1)


def crop_norm_ratio(source: np.ndarray, targets: np.ndarray) -> np.floating:
    """``find_crop_norm_ratio``: the source's crop scale over that of the target frame nearest to it in expression
    (weight 0.3) and angles (0.7) (mean absolute differences; the first such frame on ties). ``source`` (262,) or
    (1, 262), ``targets`` (T, 262); computed in their dtype (the release's semantics are float32)."""
    source = np.asarray(source).reshape(1, -1)
    targets = np.asarray(targets)
    exp_diff = np.mean(np.abs(targets[:, EXPRESSION] - source[:, EXPRESSION]), 1)
    angle_diff = np.mean(np.abs(targets[:, ANGLES] - source[:, ANGLES]), 1)
    nearest = int(np.argmin(RATIO_ALPHA * exp_diff + (1 - RATIO_ALPHA) * angle_diff))
    return source[0, CROP.start] / targets[nearest, CROP.start]


def driving_window(semantics: np.ndarray, index: int, ratio=None) -> torch.Tensor:
    """``transform_semantic``: (73, 26) float32 — expression 64, angles 3, translation 3, crop s, tx, ty — over the
    clamped window around ``index``; the crop scale times ``ratio`` when given (the release skips a ratio of 0)."""
    window = np.asarray(semantics)[window_indices(index, len(semantics))]
    crop = window[:, CROP].copy()
    if ratio:
        crop[:, 0] = crop[:, 0] * ratio
    features = np.concatenate([window[:, EXPRESSION], window[:, ANGLES], window[:, TRANSLATION], crop], 1)
    return torch.tensor(features, dtype=torch.float32).permute(1, 0)


def neutralise(driving: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
    """The release's "hacking the new expression": rows 0..63 of a (B, 73, T) driving tensor set to ``expression``
    (64 values, or more of which the first 64 are used) for every frame of the window. Returns a new tensor."""
    out = driving.clone()
    out[:, :64, :] = torch.as_tensor(expression, dtype=out.dtype, device=out.device).reshape(-1)[None, :64, None]
    return out


def nearest_same_pose(semantics: np.ndarray) -> np.ndarray:
    """(T,) for each frame the first frame with exactly its expression and angles: the target
    ``find_crop_norm_ratio`` picks when the source is one of the frames (always, in step 3). The source's own
    distance is 0, so the release's argmin lands on the first frame at distance 0, i.e. with equal values (-0.0 and
    0.0 count as equal; a distance that underflows to 0 for unequal values is the only way the two could differ).
    One pass instead of the release's T x T distances."""
    key = np.ascontiguousarray(np.concatenate([semantics[:, EXPRESSION], semantics[:, ANGLES]], 1)) + 0  # -0.0 -> 0.0
    rows = key.view(np.dtype((np.void, key.dtype.itemsize * key.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)  # first: the first occurrence
    return first[inverse.reshape(-1)]


def driving_batch(semantics: np.ndarray, indices, expression: torch.Tensor | None = None,
                  one_shot: bool = False) -> torch.Tensor:
    """(B, 73, 26) for frames ``indices`` as step 3 builds them one by one: the crop ratio of each frame's source
    (frame 0 with ``one_shot``) against all frames (``crop_norm_ratio``, found through ``nearest_same_pose``; with
    NaN semantics through the release's own argmin), the window, then the expression template if given."""
    semantics = np.asarray(semantics)
    if semantics.ndim != 2 or semantics.shape[1] != SEMANTIC_DIM:
        raise ValueError(f"expected per-frame semantics (T, {SEMANTIC_DIM}), got {semantics.shape}")
    exact = not np.isnan(semantics[:, EXPRESSION]).any() and not np.isnan(semantics[:, ANGLES]).any()
    nearest = nearest_same_pose(semantics) if exact else None
    scale = semantics[:, CROP.start]
    windows = []
    for index in indices:
        source = 0 if one_shot else index
        ratio = (scale[source] / scale[nearest[source]] if exact
                 else crop_norm_ratio(semantics[source], semantics))
        windows.append(driving_window(semantics, index, ratio))
    driving = torch.stack(windows)
    return driving if expression is None else neutralise(driving, expression)
