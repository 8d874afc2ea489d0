"""RetinaFace priors, decoding of boxes and five landmarks, greedy NMS, and the post-processing of ``detect``.

What GPEN's ``RetinaFaceDetection.detect`` does after the network, in its order and dtypes:

- priors (``PriorBox(cfg_re50)``): per level (steps 8, 16, 32; min sizes (16, 32), (64, 128), (256, 512)), per
  cell row-major, per min size: ``(cx, cy, w, h) = ((j + 0.5) * step / W, (i + 0.5) * step / H, s / W, s / H)``
  in float64, stored as float32, never clipped; the feature maps are ``ceil(H / step) x ceil(W / step)``;
- decoding with variances (0.1, 0.2): centre ``prior_c + loc_c * 0.1 * prior_wh``, size
  ``prior_wh * exp(loc_wh * 0.2)``, corners; landmarks ``prior_c + pre * 0.1 * prior_wh`` per point; then scaled
  by (W, H) to pixels (in the network's dtype: float32 priors promote to it);
- scores ``softmax[:, 1] > confidence_threshold`` (strictly), ordered by descending score (NumPy's default
  argsort, reversed) and cut to ``top_k``; boxes and scores stacked and rounded to float32; greedy NMS on those
  float32 rows with the ``+ 1`` pixel convention (kept while IoU <= ``nms_threshold``); at most ``keep_top_k``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..s3fd.boxes import decode  # the same SSD box decoding (centre/size offsets, variances 0.1 / 0.2)

MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)
CONFIDENCE_THRESHOLD = 0.9  # GPEN's detect default, which VideoReTalking's enhancer uses
NMS_THRESHOLD = 0.4
TOP_K = 5000                # candidates entering NMS
KEEP_TOP_K = 750            # detections kept after NMS


def feature_map_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """``(ceil(H / step), ceil(W / step))`` per level: the sizes of ``layer2..4`` for any input size."""
    return [(math.ceil(height / step), math.ceil(width / step)) for step in STEPS]


def prior_boxes(height: int, width: int) -> torch.Tensor:
    """(N, 4) float32 priors (cx, cy, w, h), normalised by the input size, in the order of the network's heads."""
    parts = []
    for (rows, cols), step, sizes in zip(feature_map_sizes(height, width), STEPS, MIN_SIZES):
        i, j = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64), indexing="ij")
        cx = (j.reshape(-1, 1) + 0.5) * step / width    # the original's float64 expressions, evaluated alike
        cy = (i.reshape(-1, 1) + 0.5) * step / height
        per_size = [np.concatenate([cx, cy, np.full_like(cx, s / width), np.full_like(cy, s / height)], axis=1)
                    for s in sizes]
        parts.append(np.stack(per_size, axis=1).reshape(-1, 4))  # the sizes of one cell adjacent
    return torch.from_numpy(np.concatenate(parts).astype(np.float32))


def decode_landmarks(pre: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = VARIANCES) -> torch.Tensor:
    """(N, 10) offsets and priors -> (N, 10) points (x1, y1, ..., x5, y5), normalised."""
    points = [priors[:, :2] + pre[:, 2 * k:2 * k + 2] * variances[0] * priors[:, 2:] for k in range(5)]
    return torch.cat(points, dim=1)


def nms(dets: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS on (K, 5) [x1, y1, x2, y2, score] rows (areas and overlaps counted with ``+ 1`` pixel, in the
    rows' dtype); the kept row indices, best first. A box is dropped when its IoU with a kept one exceeds
    ``threshold``."""
    x1, y1, x2, y2, scores = (dets[:, c] for c in range(5))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        height = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = width * height
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou <= threshold]
    return np.asarray(keep, dtype=np.int64)


def decode_detections(loc: torch.Tensor, scores: torch.Tensor, landmarks: torch.Tensor, height: int,
                      width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every prior's box (N, 4), five points (N, 10) in input pixels and face score (N,), as numpy arrays."""
    priors = prior_boxes(height, width).to(loc.device)
    scale = torch.tensor([width, height] * 2, dtype=torch.float32, device=loc.device)
    scale_points = torch.tensor([width, height] * 5, dtype=torch.float32, device=loc.device)
    boxes = (decode(loc, priors, VARIANCES) * scale).cpu().numpy()
    points = (decode_landmarks(landmarks, priors, VARIANCES) * scale_points).cpu().numpy()
    return boxes, points, scores[:, 1].cpu().numpy()


def postprocess(loc: torch.Tensor, scores: torch.Tensor, landmarks: torch.Tensor, height: int, width: int,
                confidence_threshold: float = CONFIDENCE_THRESHOLD, nms_threshold: float = NMS_THRESHOLD,
                top_k: int = TOP_K, keep_top_k: int = KEEP_TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """One image's network outputs ((N, 4), (N, 2), (N, 10)) on a ``height`` x ``width`` input -> ``dets`` (K, 5)
    float32 [x1, y1, x2, y2, score] and ``points`` (K, 10) (x1, y1, ..., x5, y5) in the network's dtype, in input
    pixels, best first."""
    boxes, points, face = decode_detections(loc, scores, landmarks, height, width)
    above = np.where(face > confidence_threshold)[0]
    boxes, points, face = boxes[above], points[above], face[above]
    order = face.argsort()[::-1][:top_k]
    boxes, points, face = boxes[order], points[order], face[order]
    dets = np.hstack((boxes, face[:, None])).astype(np.float32, copy=False)
    keep = nms(dets, nms_threshold)[:keep_top_k]
    return dets[keep], points[keep]
