"""Shot boundaries of a frame stream with PySceneDetect, as ``run_pipeline.py``'s ``scene_detect`` finds them.

The reference runs ``SceneManager`` with a default ``ContentDetector()`` on its 25 fps AVI. The same
detector is fed here frame by frame, after the ``SceneManager`` preprocessing (BGR, downscaled with
``cv2.INTER_LINEAR`` by ``max(width, height) / 256`` when that side is at least 256 pixels).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...optional import MissingDependencyError, require

EFFECTIVE_SIDE = 256  # scenedetect.scene_manager.DEFAULT_MIN_WIDTH
FPS = 25.0


def _import() -> tuple[Any, Any, Any]:
    feature = "the LSE face protocol (shots found with PySceneDetect)"
    cv2 = require("cv2", feature, "scenes")
    scenedetect = require("scenedetect", feature, "scenes")
    return cv2, scenedetect.ContentDetector, require("scenedetect.common", feature, "scenes").FrameTimecode


def scenedetect_available() -> str | None:
    """Why shot detection cannot run here, or None."""
    try:
        _import()
    except MissingDependencyError as exc:
        return str(exc)
    return None


class ShotDetector:
    """Feed RGB frames in order with ``add``; ``shots()`` returns ``[(start, end), ...]``, ``end`` exclusive.

    Without a cut the whole video is one shot (the reference's fallback).
    """

    def __init__(self) -> None:
        self._cv2, detector, self._timecode = _import()
        self._detector = detector()
        self._cuts: list[int] = []
        self.frames = 0

    def add(self, frame: np.ndarray) -> None:
        height, width = frame.shape[:2]
        image = np.ascontiguousarray(frame[..., ::-1])
        factor = max(width, height) / EFFECTIVE_SIDE
        if factor > 1.0:
            size = (max(1, round(width / factor)), max(1, round(height / factor)))
            image = self._cv2.resize(image, size, interpolation=self._cv2.INTER_LINEAR)
        cuts = self._detector.process_frame(self._timecode(self.frames, fps=FPS), image)
        self._cuts += [cut.frame_num for cut in cuts]
        self.frames += 1

    def shots(self) -> list[tuple[int, int]]:
        if self.frames == 0:
            return []
        cuts = self._cuts + [c.frame_num for c in self._detector.post_process(self._timecode(self.frames - 1, fps=FPS))]
        bounds = [0, *sorted(set(c for c in cuts if 0 < c < self.frames)), self.frames]
        return [(a, b) for a, b in zip(bounds, bounds[1:])]
