"""The base of the training datasets that read cached crops: each item draws from its own generator (the dataset's
``seed``, the epoch and the index: the same draws in every DataLoader worker and on resume) and reads memory-mapped
files, opened on first use in each worker and never pickled."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

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
