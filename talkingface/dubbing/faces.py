"""Face tracking for dubbing: landmarks of the whole source at its output rate, and the ``--face`` choice."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..face import FaceTracker, build_face_backend
from ..log import progress_bar
from ..media import iter_frames
from ..profiling import staged

logger = logging.getLogger(__name__)


class ChosenFace:
    """A face backend that, until the first detection, returns only face ``index`` counted left to right;
    afterwards the tracker follows that face (the detection overlapping it most)."""

    def __init__(self, backend: Any, index: int):
        self.backend, self.index, self.chosen = backend, int(index), False

    def detect(self, frame: np.ndarray) -> list:
        boxes = self.backend.detect(frame)
        if self.chosen:
            return boxes
        if len(boxes) <= self.index:
            return []
        self.chosen = True
        return [sorted(boxes, key=lambda box: box.center[0])[self.index]]

    def landmarks(self, frame: np.ndarray, box: Any) -> np.ndarray:
        return self.backend.landmarks(frame, box)


def face_choice(face: Any) -> int | None:
    """``"largest"`` -> None (the tracker's rule), an int or digit string -> that index."""
    if face is None or face == "largest":
        return None
    try:
        index = int(face)
    except (TypeError, ValueError):
        raise ConfigError(f"face must be 'largest' or a face index (0 = leftmost), got {face!r}") from None
    if index < 0:
        raise ConfigError(f"face index must be >= 0, got {index}")
    return index


def track_landmarks(path: Path, fps: float, face: Any, config: Any, backend_name: str | None, max_gap: int,
                    progress: bool, label: str) -> tuple[np.ndarray, np.ndarray]:
    """``(landmarks (n, 68, 2) with NaN where no face, valid (n,))`` of the source at ``fps``.

    ``backend_name`` (or ``preprocess.face_backend``) detects; ``max_gap`` frames without a face are filled
    from their neighbours, longer gaps pass through undubbed; ``face`` picks one of several faces.
    """
    pre = config.get("preprocess") or {}
    backend: Any = build_face_backend(str(backend_name or pre.get("face_backend", "dlib")), config)
    index = face_choice(face)
    if index is not None:
        backend = ChosenFace(backend, index)
    tracker = FaceTracker(backend, int(pre.get("detect_every", 5)), int(max_gap), int(pre.get("smoothing_window", 5)))
    with progress_bar(None, f"{label} landmarks", "frame", enabled=progress) as bar:
        for frame in staged("decode", iter_frames(path, fps=fps)):
            tracker.update(frame)
            bar.update(1)
    try:
        track = tracker.finish()
    except DataError as exc:
        which = f" (face index {index})" if index is not None else ""
        raise DataError(f"{path}: {exc}{which}") from None
    for event in track.events:
        logger.info("%s: %s", path.name, event)
    return track.landmarks, track.valid
