"""The processed clip store every plugin reads (see docs/architecture.md).

One folder per clip with ``video.mp4`` (25 fps face frames or full frames), ``audio.wav`` (16 kHz
mono), optional ``landmarks.npy`` (T x 68 x 2) and ``features/<extractor>.npy``, and ``meta.json``
written last: a clip without ``meta.json`` is unfinished. Splits are ``splits/<split>.txt``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Clip:
    """One processed clip folder."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def video_path(self) -> Path:
        return self.root / "video.mp4"

    @property
    def audio_path(self) -> Path:
        return self.root / "audio.wav"

    @property
    def meta_path(self) -> Path:
        return self.root / "meta.json"

    @property
    def is_complete(self) -> bool:
        return self.meta_path.is_file()

    @property
    def meta(self) -> dict:
        try:
            return json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.meta_path}: unreadable clip metadata ({exc})") from exc

    def landmarks(self) -> np.ndarray:
        """``(T, 68, 2)`` float32 landmarks in frame coordinates."""
        return self._load_array(self.root / "landmarks.npy")

    def face_valid(self, landmarks: np.ndarray | None = None) -> np.ndarray:
        """``(T,)`` frames with a face: ``face_valid.npy`` where preprocessing wrote it, and finite ``landmarks``
        (the clip's own unless given)."""
        landmarks = self.landmarks() if landmarks is None else landmarks
        valid = ~np.isnan(landmarks).any(axis=(1, 2))
        path = self.root / "face_valid.npy"
        return valid & np.load(path) if path.is_file() else valid

    def frame_size(self) -> tuple[int, int]:
        """``(height, width)`` of the clip's frames: from its metadata, else probed from the video."""
        meta = self.meta
        if "height" in meta and "width" in meta:
            return int(meta["height"]), int(meta["width"])
        from ..media import probe_video

        info = probe_video(self.video_path)
        return info.height, info.width

    def feature(self, name: str) -> np.ndarray:
        """Audio features of extractor ``name`` aligned to frames: ``(T, ...)``."""
        return self._load_array(self.root / "features" / f"{name}.npy")

    @staticmethod
    def _load_array(path: Path) -> np.ndarray:
        if not path.is_file():
            raise DataError(f"{path} not found; preprocess the dataset with this feature enabled")
        return np.load(path, allow_pickle=False)


class ClipStore:
    """Read access to a processed dataset folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / "store.json"

    def manifest(self) -> dict:
        """The store's manifest (layout name and the settings that produced it), or ``{}``."""
        if not self.manifest_path.is_file():
            return {}
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def split_names(self, split: str) -> list[str]:
        path = self.root / "splits" / f"{split}.txt"
        if not path.is_file():
            raise DataError(f"split file {path} not found; run `talkingface preprocess` first")
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def split(self, split: str) -> list[Clip]:
        """The complete clips of ``split``; an incomplete listed clip is an error."""
        clips = [Clip(self.root / "clips" / name) for name in self.split_names(split)]
        unfinished = [c.name for c in clips if not c.is_complete]
        if unfinished:
            raise DataError(f"{self.root}: clips listed in {split}.txt are unfinished: {', '.join(unfinished[:5])}")
        return clips

    def clip(self, name: str) -> Clip:
        return Clip(self.root / "clips" / name)
