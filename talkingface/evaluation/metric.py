"""The metric contract: registered objects fed one video pair at a time."""
from __future__ import annotations

import abc
from collections.abc import Mapping
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np

from ..media import iter_frames, read_audio, read_frames


@dataclass
class VideoSample:
    """A video on disk. Metrics stream its frames (``iter_frames``) so that memory does not grow with
    its length; ``frames`` (all of them, cached) is for short clips. ``cache`` holds per-video results
    that several metrics share, such as the reference's face boxes."""

    path: Path
    sample_rate: int = 16000
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def iter_frames(self) -> Iterator[np.ndarray]:
        """The frames one at a time, ``(H, W, 3)`` uint8 RGB at the file's own rate (from memory when
        ``frames`` was already decoded)."""
        if "frames" in self.__dict__:
            return iter(self.frames)
        return iter_frames(self.path)

    @functools.cached_property
    def frames(self) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 RGB, all decoded and kept."""
        return read_frames(self.path)

    @functools.cached_property
    def audio(self) -> np.ndarray:
        """``(N,)`` float32 mono at ``sample_rate``."""
        return read_audio(self.path, self.sample_rate)


def config_option(config: Any, key: str, default: Any) -> Any:
    """The value at dotted ``key`` of a (nested) mapping, or ``default`` when absent or null."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return default if node is None else node


class Metric(abc.ABC):
    """A registered metric. ``update`` scores one video pair and returns its per-video values;
    ``compute`` aggregates everything seen since ``reset``.

    A metric that cannot run here (missing weights) returns the reason from ``unavailable()`` and is
    reported as skipped, never as a number.
    """

    registered_name: ClassVar[str] = ""
    needs_reference: ClassVar[bool] = True
    pooled: ClassVar[bool] = False  # True when compute() needs every video's data (FID), not per-video values
    higher_is_better: ClassVar[dict[str, bool]] = {}

    def __init__(self, config: Any = None):
        self.config = config
        self.reset()

    def option(self, key: str, default: Any) -> Any:
        """The config value at dotted ``key`` (``evaluate.ssim_preset``), or ``default`` when there is
        no config, no such key, or the value is null."""
        return config_option(self.config, key, default)

    def unavailable(self) -> str | None:
        """Why this metric cannot run (e.g. ``'syncnet_v2.model not found'``), or ``None``."""
        return None

    def weight_files(self) -> dict[str, Path]:
        """The weight files its numbers depend on, by role (a leaderboard's protocol card hashes them)."""
        return {}

    def reset(self) -> None:
        self.values: dict[str, list[float]] = {}

    @abc.abstractmethod
    def score(self, generated: VideoSample, reference: VideoSample | None) -> dict[str, float]:
        """Values for one video pair."""

    def update(self, generated: VideoSample, reference: VideoSample | None) -> dict[str, float]:
        scores = self.score(generated, reference)
        for key, value in scores.items():
            self.values.setdefault(key, []).append(float(value))
        return scores

    def restore(self, scores: dict[str, float]) -> dict[str, float]:
        """Take one video's values saved from an earlier ``update`` instead of scoring it again."""
        for key, value in scores.items():
            self.values.setdefault(key, []).append(float(value))
        return scores

    def compute(self) -> dict[str, float]:
        """Mean of each per-video value (override for pooled metrics such as FID)."""
        return {key: float(np.mean(values)) for key, values in self.values.items()}


class FaceBackendMetric(Metric):
    """A metric that measures faces with ``preprocess.face_backend`` (dlib by default), built once on first use;
    it is reported as skipped when the backend cannot be built here."""

    def __init__(self, config: Any = None):
        self._backend: Any = None
        super().__init__(config)

    @property
    def face_backend_name(self) -> str:
        return self.option("preprocess.face_backend", "dlib")

    def face_backend(self) -> Any:
        if self._backend is None:
            from ..face import build_face_backend

            self._backend = build_face_backend(self.face_backend_name, self.config)
        return self._backend

    def unavailable(self) -> str | None:
        from ..errors import TalkingFaceError

        try:
            self.face_backend()
        except TalkingFaceError as exc:
            return str(exc)
        return None
