"""A resumable, distributed, per-sample-seeded sampler.

Each index comes with a seed derived from (run seed, epoch, index), and ``SeededDataset`` draws the
sample under that seed. Random sampling inside a dataset (reference frames, crops, augmentation) is
therefore a pure function of the position in training, independent of worker count, process count
and interruptions: this is what makes resume exact.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import Dataset, Sampler

from ..seeding import isolated_rng, sample_seed


class ResumableSampler(Sampler):
    """Shuffles with a (seed, epoch) generator, shards by rank, and can start mid-epoch.

    Yields ``(index, sample_seed)`` pairs for ``SeededDataset``.
    """

    def __init__(self, length: int, batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = True):
        if length <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.length, self.batch_size, self.shuffle, self.seed = length, batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order and skip its first ``start_batch`` batches (on resume)."""
        self.epoch, self.start_batch = epoch, start_batch

    def _rank_indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, -1))
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        if len(order) < self.world_size:  # tiny dataset: repeat so that every rank gets a sample
            order = order * self.world_size
        per_rank = len(order) // self.world_size
        # Interleaved like DistributedSampler: batch b of all ranks together holds the same samples
        # as batch b of one process with world_size times the batch size.
        return order[self.rank::self.world_size][:per_rank]

    def batches_per_epoch(self) -> int:
        per_rank = max(self.length // self.world_size, 1)
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = self._rank_indices()[: self.batches_per_epoch() * self.batch_size]
        for index in indices[self.start_batch * self.batch_size:]:
            yield index, sample_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return max(self.batches_per_epoch() - self.start_batch, 0) * self.batch_size


class SeededDataset(Dataset):
    """Wraps a dataset so that ``dataset[(index, seed)]`` draws item ``index`` under ``seed``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with isolated_rng(seed):
            return self.dataset[index]
