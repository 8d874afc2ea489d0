"""Face backend wrapping the ``face_alignment`` package (S3FD detector, 2D-FAN landmarks).

``face_alignment`` downloads its weights on first use; the toolkit never downloads, so the backend
checks that they are already in the torch hub cache and otherwise names the missing files.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Mapping
from urllib.parse import urlparse

import numpy as np
import torch

from ..errors import DataError
from ..optional import require
from ..registry import register_face_backend
from .base import Box, FaceBackend


def _import_face_alignment() -> tuple[ModuleType, dict[str, str]]:
    """The package and the URLs of the weights it fetches for 2D landmarks with the S3FD detector."""
    feature = "the face_alignment face backend"
    face_alignment = require("face_alignment", feature, "face-alignment")
    landmark_urls = require("face_alignment.api", feature, "face-alignment").models_urls
    detector_urls = require("face_alignment.detection.sfd.sfd_detector", feature, "face-alignment").models_urls
    return face_alignment, {"2D-FAN landmarks": landmark_urls["2DFAN-4"], "S3FD detector": detector_urls["s3fd"]}


def weights_directory() -> Path:
    """Where ``face_alignment`` (through ``torch.hub``) keeps its weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def missing_weights(urls: Mapping[str, str]) -> list[str]:
    """One line per weight file of ``urls`` (role -> URL) that is not in ``weights_directory()``."""
    directory = weights_directory()
    missing = []
    for role, url in urls.items():
        name = Path(urlparse(url).path).name
        if not (directory / name).is_file():
            missing.append(f"{name} ({role}, from {url})")
    return missing


@register_face_backend("face_alignment")
class FaceAlignmentBackend(FaceBackend):
    """S3FD detection and 2D-FAN 68 landmarks from ``face_alignment`` (Bulat & Tzimiropoulos 2017)."""

    default_config = {"face_alignment": {"device": "cpu", "flip_input": True}}

    def __init__(self, config: Mapping | None = None):
        super().__init__(config)
        face_alignment, urls = _import_face_alignment()
        missing = missing_weights(urls)
        if missing:
            raise DataError(f"face_alignment weights missing from {weights_directory()}: {'; '.join(missing)}. "
                            f"The toolkit never downloads; put the files there (or set TORCH_HOME to a folder "
                            f"whose hub/checkpoints has them)")
        # compile=False: torch.compile would spend minutes warming up and write a cache under ~/.cache
        self._model = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=self.options["device"],
                                                   flip_input=self.options["flip_input"], face_detector="sfd",
                                                   compile=False)

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Boxes of the faces in an ``(H, W, 3) uint8`` RGB frame, in frame pixels."""
        found = self._model.face_detector.detect_from_image(frame.copy())
        return [Box(*(float(v) for v in detection[:4])) for detection in found]

    def landmarks(self, frame: np.ndarray, box: Box) -> np.ndarray:
        """``(68, 2) float32`` landmarks of the face in ``box``, in frame pixels."""
        found = self._model.get_landmarks_from_image(frame, detected_faces=[box.as_array()])
        return np.asarray(found[0][:, :2], dtype=np.float32)
