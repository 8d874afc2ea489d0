"""Base of layouts whose raw data are video files: parallel processing, failures, splits."""
from __future__ import annotations

import abc
import logging
import random
import re
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

from ..config import Config
from ..errors import DataError, TalkingFaceError
from ..io_utils import atomic_write_json, atomic_write_text
from ..log import progress_bar
from .layout import DatasetLayout
from .preprocess import Segment, make_face_backend, process_source
from .store import SPLITS, ClipStore

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
Job = tuple[Path, list[Segment]]


def clip_name(text: str) -> str:
    """A file-system-safe clip name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "clip"


class VideoLayout(DatasetLayout):
    """A layout built from source videos: ``jobs()`` lists them with their segments."""

    @property
    def raw_root(self) -> Path:
        configured = self.config["data"]["raw_dir"]
        return Path(configured) if configured else super().raw_root

    @abc.abstractmethod
    def jobs(self) -> list[Job]:
        """``(source video, segments)`` pairs; segment names are the clip names."""

    def fingerprint(self) -> dict[str, Any]:
        settings = {k: v for k, v in self.config["preprocess"].to_dict().items() if k != "steps"}  # per clip
        return {"preprocess": settings, "raw_root": str(self.raw_root.resolve())}

    def assign_splits(self, groups: dict[str, list[str]]) -> dict[str, list[str]]:
        """Split ``{source: [clip names]}`` by source (clips of one video never straddle splits)."""
        fractions = self.config["preprocess"]["split"]
        return split_groups(groups, float(fractions["val"]), float(fractions["test"]), int(self.config["seed"]))

    def build(self, store: ClipStore) -> None:
        clips = store.root / "clips"
        stale = sorted(clips.glob(".*")) if clips.is_dir() else []
        for folder in stale:  # half-built clips of an interrupted run
            shutil.rmtree(folder, ignore_errors=True)
        if stale:
            logger.info("removed %d unfinished clip folders of an interrupted run", len(stale))
        jobs = self.jobs()
        if not jobs:
            raise DataError(f"no source videos found for dataset {self.registered_name!r} in {self.raw_root}")
        failures = run_jobs(jobs, store, self.config)
        skip_bad = bool(self.config["preprocess"]["skip_bad"])
        report = store.root / "failures.json"
        if failures:
            atomic_write_json(report, failures)
            listing = "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:5])
            if not skip_bad:
                raise DataError(f"{len(failures)} of {len(jobs)} source files failed ({listing}); fix or remove "
                                f"them, or set preprocess.skip_bad=true to leave them out. Report: {report}")
            logger.warning("left out %d bad source files (preprocess.skip_bad): %s", len(failures), listing)
        elif report.exists():
            report.unlink()
        groups = {str(source): [s.name for s in segments if store.clip(s.name).is_complete]
                  for source, segments in jobs}
        splits = self.assign_splits({k: v for k, v in groups.items() if v})
        for split in SPLITS:
            atomic_write_text(store.root / "splits" / f"{split}.txt", "".join(f"{n}\n" for n in splits.get(split, [])))
        logger.info("store %s: %s", store.root, ", ".join(f"{k} {len(v)}" for k, v in splits.items()))


def split_groups(groups: dict[str, list[str]], val: float, test: float, seed: int) -> dict[str, list[str]]:
    """Shuffle the groups with ``seed`` and give ``test`` and ``val`` fractions of them (at least one
    each when there are three or more groups) to those splits, the rest to train."""
    sources = sorted(groups)
    random.Random(seed).shuffle(sources)
    n = len(sources)

    def size(fraction: float) -> int:
        return max(round(n * fraction), 1) if n >= 3 and fraction > 0 else round(n * fraction)

    n_test, n_val = size(test), size(val)
    chosen = {"test": sources[:n_test], "val": sources[n_test:n_test + n_val], "train": sources[n_test + n_val:]}
    return {split: sorted(c for g in members for c in groups[g]) for split, members in chosen.items()}


_worker_backend: Any = None


def _init_worker(config_data: dict, free: Sequence[str], level: str) -> None:
    global _worker_backend
    import torch

    from ..log import setup_logging

    torch.set_num_threads(1)
    setup_logging(level)
    _worker_backend = make_face_backend(Config(config_data, free))


def _run_job(job: Job, store_root: str, config_data: dict, free: Sequence[str]) -> int:
    source, segments = job
    return len(process_source(source, segments, ClipStore(store_root), Config(config_data, free), _worker_backend))


def run_jobs(jobs: Sequence[Job], store: ClipStore, config: Config) -> dict[str, str]:
    """Process every job (in worker processes when ``preprocess.workers`` > 1); returns failures."""
    workers = max(1, min(int(config["preprocess"]["workers"]), len(jobs)))
    failures: dict[str, str] = {}
    bar = progress_bar(len(jobs), "preprocess", "video", enabled=bool(config["progress"]))
    if workers == 1:
        backend = make_face_backend(config)
        for source, segments in jobs:
            try:
                process_source(source, segments, store, config, backend)
            except TalkingFaceError as exc:
                failures[str(source)] = str(exc)
                logger.error("%s", exc)
            bar.update(1)
        bar.close()
        return failures
    data, free = config.to_dict(), sorted(config.free_sections)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(data, free, config["log_level"])) as pool:
        futures = {pool.submit(_run_job, job, str(store.root), data, free): job[0] for job in jobs}
        for future in as_completed(futures):
            try:
                future.result()
            except TalkingFaceError as exc:
                failures[str(futures[future])] = str(exc)
                logger.error("%s", exc)
            bar.update(1)
    bar.close()
    return failures
