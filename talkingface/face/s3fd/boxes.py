"""S3FD prior boxes, box decoding and the two NMS passes, matching syncnet_python ``detectors/s3fd/box_utils.py``.

All box arithmetic is float32 in the original's operation order; the final cross-scale NMS is float64 NumPy
(greedy, IoU without the +1 pixel convention). Works with NumPy 2 (no ``np.int``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

MIN_SIZES = (16, 32, 64, 128, 256, 512)
STEPS = (4, 8, 16, 32, 64, 128)
VARIANCES = (0.1, 0.2)
CONF_THRESH = 0.05   # Detect: candidates need softmax face score > 0.05
NMS_THRESH = 0.3     # Detect: per-image NMS IoU
NMS_TOP_K = 5000     # Detect: highest-scoring candidates entering NMS
TOP_K = 750          # Detect: boxes kept per image after NMS


def feature_map_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """The six source sizes for an input of ``height`` x ``width`` (pool3 uses ceil_mode, extras stride 2 pad 1)."""
    def trunk(n: int) -> list[int]:
        c3 = n // 2 // 2                   # conv3_3 after pool1, pool2
        c4 = math.ceil(c3 / 2)             # pool3 ceil_mode
        c5 = c4 // 2                       # pool4
        fc7 = c5 // 2                      # pool5 (fc6 keeps size)
        c6 = (fc7 - 1) // 2 + 1            # 3x3 stride 2 pad 1
        c7 = (c6 - 1) // 2 + 1
        return [c3, c4, c5, fc7, c6, c7]
    return list(zip(trunk(height), trunk(width)))


def prior_boxes(input_hw: tuple[int, int], sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(N, 4) float32 priors (cx, cy, w, h) normalised by the input size, one per cell, row-major per source.

    Computed in float64 as ``cx = (j + 0.5) / (W / step)``, ``w = min_size / W`` and then cast to float32.
    """
    imh, imw = input_hw
    parts = []
    for k, (fh, fw) in enumerate(sizes):
        ii, jj = np.meshgrid(np.arange(fh, dtype=np.float64), np.arange(fw, dtype=np.float64), indexing="ij")
        cx = (jj.ravel() + 0.5) / (imw / STEPS[k])
        cy = (ii.ravel() + 0.5) / (imh / STEPS[k])
        wh = np.broadcast_to([MIN_SIZES[k] / imw, MIN_SIZES[k] / imh], (cx.size, 2))
        parts.append(np.column_stack([cx, cy, wh]))
    return torch.from_numpy(np.concatenate(parts).astype(np.float32))


def decode(loc: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = VARIANCES) -> torch.Tensor:
    """Offsets (N, 4) + priors (cx, cy, w, h) -> corner boxes (x1, y1, x2, y2), normalised."""
    centre = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])
    top_left = centre - size / 2
    return torch.cat((top_left, size + top_left), 1)


def ssd_nms(boxes: torch.Tensor, scores: torch.Tensor, overlap: float = NMS_THRESH,
            top_k: int = NMS_TOP_K) -> torch.Tensor:
    """Greedy NMS over the ``top_k`` best scores; indices kept, best first (suppresses IoU > ``overlap``).

    Equal scores are ordered by torch's default (unstable) ascending sort walked from the end, the call the
    original makes; that order is implementation-defined (it differs between CPU sizes and CUDA), so exactly
    tied float32 scores follow whatever torch does on the device the boxes are on, as the original's did.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = torch.mul(x2 - x1, y2 - y1)
    idx = scores.sort(0).indices[-top_k:]
    keep = []
    while idx.numel() > 0:
        i = idx[-1]
        keep.append(int(i))
        if idx.numel() == 1:
            break
        idx = idx[:-1]
        w = torch.clamp(torch.clamp(x2[idx], max=x2[i]) - torch.clamp(x1[idx], min=x1[i]), min=0.0)
        h = torch.clamp(torch.clamp(y2[idx], max=y2[i]) - torch.clamp(y1[idx], min=y1[i]), min=0.0)
        inter = w * h
        iou = inter / ((area[idx] - inter) + area[i])
        idx = idx[iou.le(overlap)]
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def detect_one(loc: torch.Tensor, conf_logits: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """One image's (N, 4) loc and (N, 2) logits -> (K, 5) float32 [score, x1, y1, x2, y2] normalised, best first.

    Softmax face score > 0.05, decode with variances (0.1, 0.2), NMS IoU 0.3 over the top 5000, at most 750.
    """
    scores = torch.softmax(conf_logits, dim=-1)[:, 1]
    boxes = decode(loc, priors)
    mask = scores.gt(CONF_THRESH)
    scores, boxes = scores[mask], boxes[mask]
    keep = ssd_nms(boxes, scores)[:TOP_K]
    return torch.cat((scores[keep].unsqueeze(1), boxes[keep]), 1)


def nms_numpy(dets: np.ndarray, thresh: float) -> np.ndarray:
    """Greedy NMS (py-faster-rcnn style, no +1) on (K, 5) [x1, y1, x2, y2, score]; kept row indices (int64)."""
    x1, y1, x2, y2, scores = (dets[:, c] for c in range(5))
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 for empty boxes -> NaN -> dropped
            ovr = inter / (areas[i] + areas[rest] - inter)
        order = rest[np.where(ovr <= thresh)[0]]
    return np.asarray(keep, dtype=np.int64)
