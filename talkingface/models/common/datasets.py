"""The base of the training datasets that read cached crops: each item draws from its own generator (the dataset's
``seed``, the epoch and the index: the same draws in every DataLoader worker and on resume) and reads memory-mapped
files, opened on first use in each worker and never pickled."""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from torch.utils.data import Dataset

from ...errors import DataError
from ...io_utils import atomic_path, atomic_write_json
from ...media import iter_frames
from ...seeding import item_generator


class SeededMemmapDataset(Dataset):
    """Subclasses set ``seed`` (None: fresh draws every time) and read their files through ``mapped``."""

    seed: int | None = None
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples an integer ``seed`` draws."""
        self.epoch = int(epoch)

    def generator(self, index: int) -> np.random.Generator:
        """Item ``index``'s generator (``talkingface.seeding.item_generator``)."""
        return item_generator(self.seed, self.epoch, index)

    def mapped(self, slot: int, path: Path) -> np.ndarray:
        """The ``.npy`` file ``path`` memory-mapped read-only, opened once per process under ``slot``."""
        opened = self.__dict__.setdefault("_opened", {})
        if slot not in opened:
            opened[slot] = np.load(path, mmap_mode="r")
        return opened[slot]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_opened"] = {}  # memory maps are reopened in each worker, never pickled
        return state


def cache_folder(root: Path, name: str, key: Mapping[str, Any]) -> Path:
    """``root/<name>-<16 hex digits of key's SHA-256>``: one cache entry per content key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(root) / f"{name}-{digest}"


def write_frame_cache(video: Path, count: int, files: Mapping[str, tuple[Path, tuple[int, ...]]],
                      crop: Callable[[np.ndarray], np.ndarray],
                      fill: Callable[[dict[str, np.ndarray], int, np.ndarray], None], batch: int,
                      key_path: Path, key: Mapping[str, Any]) -> None:
    """Stream ``video``'s first ``count`` frames through ``crop`` into uint8 memory-mapped ``.npy`` files
    (``files``: name -> (path, shape)) in batches: ``fill(arrays, start, crops)`` writes a batch of crops (and what is
    made from them) at ``start``. Every file is written atomically and ``key_path`` (the entry's ``key``) last, so a
    half-built entry is never read; memory holds one batch (a 4-minute video at 256 px would be GBs). DataError when
    the video has fewer frames than ``count``."""
    with contextlib.ExitStack() as stack:
        temporary = {name: stack.enter_context(atomic_path(path)) for name, (path, _) in files.items()}
        arrays = {name: np.lib.format.open_memmap(temporary[name], mode="w+", dtype=np.uint8, shape=shape)
                  for name, (_, shape) in files.items()}
        pending: list[np.ndarray] = []
        frames = 0
        for frame in iter_frames(video):
            if frames >= count:
                break
            pending.append(crop(frame))
            frames += 1
            if len(pending) == batch:
                fill(arrays, frames - batch, np.stack(pending))
                pending.clear()
        if pending:
            fill(arrays, frames - len(pending), np.stack(pending))
        if frames != count:
            raise DataError(f"{video}: {frames} frames decoded, {count} expected")
        for values in arrays.values():
            values.flush()
        arrays.clear()  # the memory maps closed before the files are renamed into place
    atomic_write_json(key_path, dict(key))
