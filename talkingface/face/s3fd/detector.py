"""S3FDDetector: syncnet_python's ``S3FD.detect_faces`` on uint8 RGB frames, with strict weight loading."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ...errors import CheckpointError, DataError
from ...checkpoint import load_state_dict_strict, read_checkpoint
from ...device import resolve_device
from .boxes import detect_one, feature_map_sizes, nms_numpy, prior_boxes
from .network import S3FD
from .preprocess import prepare, scaled_size

CONF_TH = 0.9          # run_pipeline.py inference_video
SCALES = (0.25,)       # run_pipeline.py --facedet_scale default
FINAL_NMS_IOU = 0.1    # detect_faces: nms_(bboxes, 0.1) over all scales


class S3FDDetector:
    """Face boxes [x1, y1, x2, y2, score] in original-frame pixels from the released ``sfd_face.pth``."""

    def __init__(self, weights: str | Path, device: str | torch.device | None = None) -> None:
        path = Path(weights)
        state = read_checkpoint(path, map_location="cpu")
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
        network = S3FD()
        load_state_dict_strict(network, state, str(path))
        self._setup(network, device)

    @classmethod
    def from_network(cls, network: S3FD, device: str | torch.device | None = None) -> "S3FDDetector":
        """A detector around an already-built network (tests, custom weights)."""
        detector = cls.__new__(cls)
        detector._setup(network, device)
        return detector

    def _setup(self, network: S3FD, device: str | torch.device | None) -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        # channels-last runs oneDNN's convolutions about 20 % faster on CPU (same function)
        self.network = network.to(self.device, torch.float32).eval().to(memory_format=torch.channels_last)

    def detect(self, frame: np.ndarray, conf_th: float = CONF_TH, scales: Sequence[float] = SCALES) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame -> (K, 5) float32 [x1, y1, x2, y2, score], highest score first."""
        frame = np.asarray(frame)
        if frame.ndim != 3:
            raise DataError(f"S3FD expects one (H, W, 3) uint8 RGB frame, got shape {frame.shape}")
        return self.detect_batch(frame[None], conf_th, scales)[0]

    def detect_batch(self, frames: np.ndarray | Sequence[np.ndarray], conf_th: float = CONF_TH,
                     scales: Sequence[float] = SCALES) -> list[np.ndarray]:
        """(B, H, W, 3) uint8 RGB frames of one size -> per frame (K, 5) float32; one network pass per scale."""
        frames = _check_frames(frames)
        batch, height, width = frames.shape[:3]
        found: list[list[np.ndarray]] = [[] for _ in range(batch)]
        pixels = torch.from_numpy(frames).to(self.device)
        scale_wh = torch.tensor([width, height, width, height], dtype=torch.float32)
        with torch.no_grad():
            for scale in scales:
                _check_input_size(height, width, float(scale))
                inputs = prepare(pixels, float(scale))
                loc, conf, sizes = self.network(inputs.contiguous(memory_format=torch.channels_last))
                priors = prior_boxes((inputs.shape[2], inputs.shape[3]), sizes).to(self.device)
                for b in range(batch):  # decoded and NMS-ed on the network's device, as in the original
                    dets = detect_one(loc[b].clone(), conf[b].clone(), priors).cpu()  # fresh, aligned storage
                    n = _leading_above(dets[:, 0], conf_th)
                    boxes = (dets[:n, 1:] * scale_wh).numpy().astype(np.float64)
                    found[b].append(np.column_stack([boxes, dets[:n, 0].numpy().astype(np.float64)]))
        return [_merge(parts) for parts in found]


def _leading_above(scores: torch.Tensor, conf_th: float) -> int:
    """How many leading scores exceed ``conf_th`` (the original reads rows while score > conf_th)."""
    below = torch.nonzero(~(scores > conf_th))
    return int(below[0, 0]) if below.numel() else int(scores.numel())


def _merge(parts: list[np.ndarray]) -> np.ndarray:
    """Stack the scales' boxes (float64) and apply the final NMS at IoU 0.1; float32 output."""
    dets = np.concatenate(parts, axis=0) if parts else np.empty((0, 5))
    return dets[nms_numpy(dets, FINAL_NMS_IOU)].astype(np.float32)


def _check_input_size(height: int, width: int, scale: float) -> None:
    """The network needs every source map non-empty: at least 28 px per side after scaling."""
    if scale <= 0:
        raise DataError(f"S3FD scale must be positive, got {scale}")
    size = scaled_size(height, width, scale)
    if min(min(hw) for hw in feature_map_sizes(*size)) < 1:
        raise DataError(f"S3FD input {height}x{width} at scale {scale} is {size[0]}x{size[1]}, "
                        "smaller than the 28x28 the network needs")


def _check_frames(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    try:
        frames = np.stack(frames) if not isinstance(frames, np.ndarray) else frames
    except ValueError as exc:
        raise DataError(f"S3FD batch frames must all have the same size ({exc})") from exc
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise DataError(f"S3FD expects (B, H, W, 3) uint8 RGB frames, got {frames.dtype} {frames.shape}")
    if frames.shape[0] == 0:
        raise DataError("S3FD got an empty batch of frames")
    return np.ascontiguousarray(frames)
