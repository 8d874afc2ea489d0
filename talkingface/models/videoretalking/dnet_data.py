"""D-Net fine-tuning data (the ``dnet`` stage; docs/videoretalking.md, "Training"): PIRender's pairs, a source and a
driving frame of the same clip, in the release's own geometry.

Each clip goes through the dubbing's steps 0–2 once (``Stabiliser.analyse``: one FFHQ box for the clip, ReconNet's
262 semantics per frame), and its 256 crops are cut into a memory-mapped cache keyed on the video, the ReconNet
weights and the 3D landmark template (a changed file writes new ones). An item: ``source`` and ``target`` crops in
[-1, 1] RGB, and the target's ``(73, 26)`` driving window (``driving_batch`` without a template: the target's own
expression, so D-Net learns to re-pose the source into the target).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import DataError
from ...io_utils import atomic_path, file_identity
from ...media import iter_frames
from ..common.datasets import SeededMemmapDataset
from .semantics import driving_batch
from .stabilise import FACE_SIZE, Stabiliser, dnet_image, face_crop

logger = logging.getLogger(__name__)


class DNetPairs(SeededMemmapDataset):
    """Source/target pairs of every clip with at least two frames with a face."""

    def __init__(self, store: Any, split: str, stabiliser: Stabiliser, weights: list[Path], cache_dir: Path,
                 seed: int | None = None, pairs_per_clip: int = 100):
        self.seed, self.pairs_per_clip = seed, max(int(pairs_per_clip), 1)
        self.clips: list[tuple[Path, np.ndarray, np.ndarray]] = []  # crops file, semantics, frames with a face
        for clip in store.split(split):
            entry = self._load(clip, stabiliser, weights, Path(cache_dir))
            if entry is not None:
                self.clips.append(entry)
        if not self.clips:
            raise DataError(f"{store.root} split {split!r}: no clip has two frames with a face for D-Net's pairs")

    @staticmethod
    def _load(clip: Any, stabiliser: Stabiliser, weights: list[Path], cache_dir: Path):
        landmarks = clip.landmarks().astype(np.float64)
        valid = clip.face_valid(landmarks)
        if valid.sum() < 2:
            logger.info("%s: skipped, fewer than two frames with a face", clip.name)
            return None
        identity = {"video": file_identity(clip.video_path), "weights": [file_identity(p) for p in weights], "version": 1}
        key = hashlib.sha1(json.dumps(identity).encode()).hexdigest()[:16]
        crops_path = cache_dir / f"{clip.name}.{key}.crops.npy"
        semantics_path = cache_dir / f"{clip.name}.{key}.semantics.npy"
        if not (crops_path.is_file() and semantics_path.is_file()):
            height, width = clip.frame_size()
            state = stabiliser.analyse(iter_frames(clip.video_path), landmarks, valid, (width, height))
            cache_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(crops_path) as tmp:
                array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                                  shape=(len(landmarks), FACE_SIZE, FACE_SIZE, 3))
                for index, frame in enumerate(iter_frames(clip.video_path)):
                    if index < len(array):
                        array[index] = face_crop(frame, state.crop)
                array.flush()
                del array
            with atomic_path(semantics_path) as tmp:
                np.save(tmp, state.semantics.astype(np.float32))
        semantics = np.load(semantics_path)
        return crops_path, semantics, np.flatnonzero(valid[:len(semantics)])

    def __len__(self) -> int:
        return len(self.clips) * self.pairs_per_clip

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        slot = index % len(self.clips)
        crops_path, semantics, faces = self.clips[slot]
        rng = self.generator(index)
        source, target = (int(f) for f in rng.choice(faces, size=2, replace=False))
        crops = self.mapped(slot, crops_path)
        images = dnet_image(np.stack([crops[source], crops[target]]))
        return {"source": images[0], "target": images[1], "driving": driving_batch(semantics, [target])[0]}
