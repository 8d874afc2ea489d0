"""RetinaFaceDetector: GPEN's ``RetinaFaceDetection.detect`` on one image, with strict weight loading."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from ...checkpoint import add_missing_batchnorm_counters, load_state_dict_strict, read_checkpoint, strip_prefix
from ...device import resolve_device
from ...errors import CheckpointError, DataError
from .boxes import CONFIDENCE_THRESHOLD, KEEP_TOP_K, NMS_THRESHOLD, TOP_K, postprocess
from .network import RetinaFace
from .preprocess import prepare
from .weights import RETINAFACE_R50


def load_retinaface_weights(network: RetinaFace, path: str | Path) -> RetinaFace:
    """Load ``RetinaFace-R50.pth`` (or a file of the same layout) into ``network``, strictly.

    As GPEN's ``load_model``: a ``{'state_dict': ...}`` wrapper is unwrapped and the ``module.`` prefix of
    ``nn.DataParallel`` is stripped. GPEN then loads with ``strict=False``; here every key must match (BatchNorm
    ``num_batches_tracked`` counters, which do not change eval outputs, are added where a file lacks them).
    """
    path = Path(path)
    reason = RETINAFACE_R50.missing_reason(path)
    if reason:
        raise CheckpointError(f"{reason} (get {RETINAFACE_R50.filename} from {RETINAFACE_R50.source})")
    state = read_checkpoint(path, map_location="cpu")
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    state = add_missing_batchnorm_counters(strip_prefix(state, "module."))
    load_state_dict_strict(network, state, str(path))
    return network


class RetinaFaceDetector:
    """Faces in one image: boxes [x1, y1, x2, y2, score] and five landmarks (eyes, nose, mouth corners) in pixels.

    ``RetinaFaceDetector()`` reads ``checkpoints/RetinaFace-R50.pth``; ``from_network`` wraps a built network (its
    dtype is kept: float64 for parity checks).
    """

    def __init__(self, weights: str | Path | None = None, device: str | torch.device | None = None) -> None:
        network = load_retinaface_weights(RetinaFace(), weights or RETINAFACE_R50.default_path())
        self._setup(network, device)

    @classmethod
    def from_network(cls, network: RetinaFace, device: str | torch.device | None = None) -> "RetinaFaceDetector":
        detector = cls.__new__(cls)
        detector._setup(network, device)
        return detector

    def _setup(self, network: RetinaFace, device: str | torch.device | None) -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.network = network.to(self.device).eval()
        self.dtype = next(network.parameters()).dtype

    def forward(self, pixels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(h, w, 3) float32 prepared pixels -> the network's (N, 4), (N, 2), (N, 10) outputs for them."""
        batch = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]
        with torch.no_grad():
            loc, scores, landmarks = self.network(batch.to(self.device, self.dtype))
        return loc[0], scores[0], landmarks[0]

    def detect(self, image: np.ndarray, color: str = "rgb", confidence_threshold: float = CONFIDENCE_THRESHOLD,
               nms_threshold: float = NMS_THRESHOLD, top_k: int = TOP_K,
               keep_top_k: int = KEEP_TOP_K) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) image (uint8 or float, ``color`` 'rgb' or 'bgr') -> ``dets`` (K, 5) float32
        [x1, y1, x2, y2, score] and ``landmarks`` (K, 5, 2) (x, y) in the image's pixels, best score first.

        GPEN's ``detect(img_raw)`` returns the same ``dets`` and its landmarks as (K, 10) [x1..x5, y1..y5]:
        ``to_gpen_landmarks(landmarks)``.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
            raise DataError(f"RetinaFace expects one (H, W, 3) image, got shape {image.shape}")
        pixels, ss = prepare(image, color)
        loc, scores, landmarks = self.forward(pixels)
        dets, points = postprocess(loc, scores, landmarks, pixels.shape[0], pixels.shape[1], confidence_threshold,
                                   nms_threshold, top_k, keep_top_k)
        return dets / ss, points.reshape(-1, 5, 2) / ss


def to_gpen_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(K, 5, 2) points -> (K, 10) [x1, ..., x5, y1, ..., y5], the layout GPEN's ``detect`` returns."""
    return np.asarray(landmarks).transpose(0, 2, 1).reshape(-1, 10)
