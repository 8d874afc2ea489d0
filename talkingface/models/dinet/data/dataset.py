"""DINet's frame-stage and clip-stage training sets over a processed clip store split.

One stored clip plays the part of one official "video": it is cut into accepted 9-frame clips
(``clips.plan_clips``), whose faces are cropped once into a memory-mapped cache (``cache.py``), and
samples are drawn like ``dataset_DINet_frame.py`` / ``dataset_DINet_clip.py``
(``references.py``). Items are dicts of float32 tensors, RGB in [0, 1]:

* frame stage: ``source`` (3,H,W), ``source_masked`` (3,H,W), ``refs`` (15,H,W), ``audio`` (C,5);
* clip stage: ``source`` (5,3,H,W), ``masked`` (5,3,H,W), ``refs`` (5,15,H,W), ``audio`` (5,C,5),
  ``audio_full`` (C,9).

Randomness: with ``seed=None`` (what the trainer uses) each item draws from a generator seeded from
NumPy's global RNG, which ``training.sampler.SeededDataset`` seeds per (run seed, epoch, index);
with an integer ``seed`` the generator is seeded with ``sample_seed(seed, epoch, index)``
(``set_epoch`` selects the epoch). Either way an item is a pure function of (seed, epoch, index).
The per-clip crop scales come from ``crop_seed`` and the clip name, fixed like the official
preprocessing, so the crop cache is shared by every run and stage with the same mouth size.

The face crop is a ``CropStyle``: DINet's landmark box (``DINET_CROPS``, the default) or another model's
(LawDNet's frontalised crop), which plans the clips, crops each frame and masks the source face.
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ....errors import DataError
from ....audio import feature_time_axis, frame_vectors
from ...common.datasets import SeededMemmapDataset
from .cache import CropFunction, cached_crops
from .clips import ClipPlan, clip_features, generator_window, plan_clips, syncnet_window
from .crops import crop_face, face_size, mouth_mask
from .references import REFERENCES, SOURCE_FRAMES, clip_stage_pick, frame_stage_pick

logger = logging.getLogger(__name__)


PlanFunction = Callable[[np.ndarray, tuple[int, int], np.random.Generator, int, tuple[int, int]], ClipPlan]


@dataclass(frozen=True)
class CropStyle:
    """How a model crops its training faces: ``plan(landmarks (T, 68, 2), frame (H, W), rng, feature frames,
    face (h, w))`` cuts a stored clip into accepted 9-frame clips with one crop per frame, ``crop(frame, box,
    face (h, w))`` makes one uint8 face, ``mask(h, w, mouth)`` is the float32 multiplier that hides the mouth of
    the generator's source face, and ``name`` names the crop cache folder (``<store>/cache/<name>``)."""

    name: str
    plan: PlanFunction
    crop: CropFunction
    mask: Callable[[int, int, int], np.ndarray]


def _dinet_plan(landmarks: np.ndarray, frame_size: tuple[int, int], rng: np.random.Generator,
                num_feature_frames: int, size: tuple[int, int]) -> ClipPlan:
    return plan_clips(landmarks, frame_size, rng, num_feature_frames=num_feature_frames)


DINET_CROPS = CropStyle("dinet_crops", _dinet_plan, crop_face, mouth_mask)


class _StoredClip:
    """What a dataset keeps per usable stored clip: its crop file and ``(K, 9, C)`` audio vectors (and those of
    a second feature for the SyncNet, when the model uses one)."""

    def __init__(self, name: str, crops_path: Path, audio: np.ndarray, sync_audio: np.ndarray | None = None):
        self.name, self.crops_path, self.audio = name, crops_path, audio
        self.sync_audio = audio if sync_audio is None else sync_audio


class _DINetDataset(SeededMemmapDataset):
    """Shared loading: plans, crop cache, audio vectors, seeding."""

    min_clips = 1

    def __init__(self, store: Any, split: str, mouth: int, audio_feature: str = "deepspeech",
                 augment_num: int = 1, seed: int | None = None, cache_dir: str | Path | None = None,
                 crop_seed: int = 0, audio_reduction: str = "auto", style: CropStyle = DINET_CROPS,
                 sync_feature: str | None = None):
        if augment_num < 1:
            raise ValueError(f"augment_num must be >= 1, got {augment_num}")
        self.mouth = int(mouth)
        self.size = face_size(self.mouth)
        self.style = style
        self.mask = torch.from_numpy(np.asarray(style.mask(*self.size, self.mouth), np.float32))
        self.augment_num, self.seed = int(augment_num), seed
        self.audio_feature = audio_feature
        self.sync_feature = sync_feature if sync_feature != audio_feature else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path(store.root) / "cache" / style.name
        self.clips: list[_StoredClip] = []
        self.audio_channels = 0
        for clip in store.split(split):
            entry = self._load_clip(clip, crop_seed, audio_reduction)
            if entry is not None:
                self.clips.append(entry)
        if not self.clips:
            raise DataError(f"{store.root} split {split!r}: no clip has the {self.min_clips} accepted 9-frame "
                            f"clips DINet's {type(self).__name__} needs")

    @staticmethod
    def _vectors(clip: Any, feature: str, reduction: str) -> np.ndarray:
        raw = clip.feature(feature)
        return frame_vectors(raw, feature_time_axis(feature, raw.shape[1:], reduction))

    def _load_clip(self, clip: Any, crop_seed: int, reduction: str) -> _StoredClip | None:
        vectors = self._vectors(clip, self.audio_feature, reduction)
        sync_vectors = None if self.sync_feature is None else self._vectors(clip, self.sync_feature, reduction)
        usable = len(vectors) if sync_vectors is None else min(len(vectors), len(sync_vectors))
        landmarks = clip.landmarks()
        frame_size = clip.frame_size()
        rng = np.random.default_rng([int(crop_seed), zlib.crc32(clip.name.encode("utf-8"))])
        plan = self.style.plan(landmarks, frame_size, rng, usable, self.size)
        if plan.rejected:
            logger.debug("%s: %d of %d 9-frame clips rejected: %s", clip.name, len(plan.rejected),
                         len(plan.rejected) + len(plan.accepted), sorted(set(plan.rejected.values())))
        if len(plan.accepted) < self.min_clips:
            logger.info("%s: skipped, %d accepted 9-frame clips (%s needs %d)", clip.name, len(plan.accepted),
                        type(self).__name__, self.min_clips)
            return None
        if self.audio_channels and vectors.shape[1] != self.audio_channels:
            raise DataError(f"{clip.name}: feature {self.audio_feature!r} is {vectors.shape[1]} wide, "
                            f"other clips {self.audio_channels}")
        self.audio_channels = vectors.shape[1]
        path = cached_crops(clip.video_path, clip.name, plan, self.size, self.cache_dir, self.style.crop)
        audio = np.stack([clip_features(vectors, crop) for crop in plan.accepted]).astype(np.float32)
        sync = None if sync_vectors is None else np.stack(
            [clip_features(sync_vectors, crop) for crop in plan.accepted]).astype(np.float32)
        return _StoredClip(clip.name, path, audio, sync)

    def __len__(self) -> int:
        return len(self.clips) * self.augment_num

    def _clip(self, index: int) -> tuple[_StoredClip, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        slot = index % len(self.clips)  # official: every video listed augment_num times
        return self.clips[slot], self.mapped(slot, self.clips[slot].crops_path)

    # ---- tensors ------------------------------------------------------------------------------
    @staticmethod
    def _images(crops: np.ndarray) -> torch.Tensor:
        """``(..., H, W, 3)`` uint8 -> ``(..., 3, H, W)`` float32 in [0, 1]."""
        return torch.from_numpy(np.array(crops, dtype=np.float32) / 255.0).movedim(-1, -3)

    def _references(self, crops: np.ndarray, picks: tuple[tuple[int, int], ...]) -> torch.Tensor:
        """Five ``(clip, frame)`` crops concatenated on channels: ``(15, H, W)``."""
        images = self._images(np.stack([crops[c, f] for c, f in picks]))
        return images.reshape(3 * REFERENCES, *self.size)


class DINetFrameDataset(_DINetDataset):
    """Frame stage (``dataset_DINet_frame.py``): one masked source frame, 5 references, 5 audio frames."""

    min_clips = 1 + REFERENCES

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip, crops = self._clip(index)
        pick = frame_stage_pick(len(clip.audio), self.generator(index))
        source = self._images(crops[pick.source_clip, pick.source_frame])
        audio = generator_window(clip.audio[pick.source_clip], pick.source_frame)
        return {"source": source, "source_masked": source * self.mask,
                "refs": self._references(crops, pick.references),
                "audio": torch.from_numpy(np.ascontiguousarray(audio.T))}


class DINetClipDataset(_DINetDataset):
    """Clip stage (``dataset_DINet_clip.py``): frames 2..6 of one clip, each with its own 5 references."""

    min_clips = REFERENCES

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip, crops = self._clip(index)
        pick = clip_stage_pick(len(clip.audio), self.generator(index))
        source = self._images(crops[pick.source_clip, list(SOURCE_FRAMES)])
        features = clip.audio[pick.source_clip]
        audio = np.stack([generator_window(features, f).T for f in SOURCE_FRAMES])
        return {"source": source, "masked": source * self.mask,
                "refs": torch.stack([self._references(crops, refs) for refs in pick.references]),
                "audio": torch.from_numpy(np.ascontiguousarray(audio)),
                "audio_full": torch.from_numpy(np.ascontiguousarray(syncnet_window(clip.sync_audio[pick.source_clip]).T))}
