"""The face backend contract (a detector plus a 68-point landmark model) and the ``Box`` type."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np

from ..config import Config, defaults_of, merge_layer
from ..registry import FACE_BACKENDS


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in frame pixels that indexes like a slice: ``frame[top:bottom, left:right]``."""

    left: float
    top: float
    right: float
    bottom: float

    @classmethod
    def from_points(cls, points: np.ndarray) -> "Box":
        """The bounding box of ``(N, 2)`` points (x, y)."""
        low = np.min(points, axis=0)
        high = np.max(points, axis=0)
        return cls(float(low[0]), float(low[1]), float(high[0]), float(high[1]))

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return (self.left + self.right) / 2, (self.top + self.bottom) / 2

    def iou(self, other: "Box") -> float:
        """Intersection over union; 0 for disjoint or empty boxes."""
        overlap = Box(max(self.left, other.left), max(self.top, other.top),
                      min(self.right, other.right), min(self.bottom, other.bottom))
        if overlap.width <= 0 or overlap.height <= 0:
            return 0.0
        union = self.area + other.area - overlap.area
        return overlap.area / union if union > 0 else 0.0

    def scaled(self, factor: float) -> "Box":
        """All coordinates multiplied by ``factor`` (a box found on a resized frame, mapped back)."""
        return Box(self.left * factor, self.top * factor, self.right * factor, self.bottom * factor)

    def expanded(self, factor: float) -> "Box":
        """The box grown (or shrunk) by ``factor`` about its centre."""
        cx, cy = self.center
        half_w, half_h = self.width * factor / 2, self.height * factor / 2
        return Box(cx - half_w, cy - half_h, cx + half_w, cy + half_h)

    def as_array(self) -> np.ndarray:
        """``(4,) float32`` left, top, right, bottom."""
        return np.array([self.left, self.top, self.right, self.bottom], dtype=np.float32)


class FaceBackend(abc.ABC):
    """A registered face detector plus 68-point (iBUG layout) landmark model.

    Frames are ``(H, W, 3) uint8 RGB``. Subclasses set ``default_config = {name: {option: default}}``
    like models do; the constructor takes a config (the run's whole config or just that section) and
    keeps the checked options of its own section in ``self.options``. Models are loaded in
    ``__init__``, once per instance; they are not picklable, so each worker process builds its own.
    """

    default_config: ClassVar[dict] = {}
    registered_name: ClassVar[str] = ""

    def __init__(self, config: Mapping | None = None):
        section = self.registered_name
        options = defaults_of(type(self)).get(section, {})
        given = (config or {}).get(section) or {}
        merge_layer(options, dict(given), f"face backend {section!r} options", define=False, prefix=f"{section}.")
        self.options = Config(options)

    @abc.abstractmethod
    def detect(self, frame: np.ndarray) -> list[Box]:
        """Boxes of the faces in ``frame``, in frame pixels (empty when there is none)."""

    @abc.abstractmethod
    def landmarks(self, frame: np.ndarray, box: Box) -> np.ndarray:
        """``(68, 2) float32`` landmarks (x, y) of the face in ``box``, in frame pixels."""


def build_face_backend(name: str, config: Mapping | None = None) -> FaceBackend:
    """The backend registered as ``name``; its options come from ``config[name]`` when present."""
    backend: Any = FACE_BACKENDS.get(name)
    return backend(config)
