"""Registered preprocessing steps: work done on every finished clip of a store after it is built (``face3d``:
per-frame 3DMM coefficients), selected by ``preprocess.steps``.

A step writes its files into ``<clip>/<step>/``, built in ``<clip>/.<step>.partial/`` and renamed into place when
complete, with ``step.json`` (the step's settings fingerprint) written last: a clip whose ``step.json`` holds the
current fingerprint is done and skipped. Work a step can resume from goes to ``<clip>/.<step>.state/``, which is
kept across interruptions while the fingerprint is the same and removed when the step finishes.
"""
from __future__ import annotations

import abc
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable, ClassVar

from ..config import Config
from ..errors import DataError
from ..io_utils import atomic_write_json
from ..log import progress_bar
from ..registry import PREPROCESS_STEPS
from .store import Clip, ClipStore

logger = logging.getLogger(__name__)

STEP_FILE = "step.json"


class PreprocessStep(abc.ABC):
    """One registered step. Subclasses implement ``process`` and ``fingerprint`` (the settings that change the
    output; a clip done with other settings is done again)."""

    registered_name: ClassVar[str] = ""

    def __init__(self, config: Config):
        self.config = config

    @abc.abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """JSON-serialisable settings that determine the output."""

    @abc.abstractmethod
    def process(self, clip: Clip, out: Path, state: Path, progress: Callable[[int], None]) -> dict[str, Any]:
        """Write the step's files for ``clip`` into ``out`` (an empty folder); ``state`` is a folder for resumable
        intermediate work; ``progress(n)`` reports n more frames done. Returns a summary stored in ``step.json``."""

    def _fingerprint_json(self) -> Any:
        return json.loads(json.dumps(self.fingerprint(), default=str))

    def output_dir(self, clip: Clip) -> Path:
        return clip.root / self.registered_name

    def is_done(self, clip: Clip) -> bool:
        """Whether ``clip`` holds this step's output made with the current settings."""
        marker = self.output_dir(clip) / STEP_FILE
        if not marker.is_file():
            return False
        try:
            return json.loads(marker.read_text(encoding="utf-8")).get("fingerprint") == self._fingerprint_json()
        except ValueError:
            return False

    def run(self, clip: Clip, progress: Callable[[int], None] = lambda n: None) -> Path:
        """Process ``clip`` and move the output into place atomically; returns the output folder."""
        name = self.registered_name
        partial = clip.root / f".{name}.partial"
        state = clip.root / f".{name}.state"
        fingerprint = self._fingerprint_json()
        state_marker = state / "fingerprint.json"
        if state.exists() and (not state_marker.is_file()
                               or json.loads(state_marker.read_text(encoding="utf-8")) != fingerprint):
            shutil.rmtree(state)  # intermediate work of other settings
        state.mkdir(exist_ok=True)
        atomic_write_json(state_marker, fingerprint)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        try:
            summary = self.process(clip, partial, state, progress)
            atomic_write_json(partial / STEP_FILE, {"step": name, "fingerprint": fingerprint, "summary": summary})
            target = self.output_dir(clip)
            if target.exists():
                shutil.rmtree(target)
            partial.rename(target)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        shutil.rmtree(state, ignore_errors=True)
        return target


def complete_clips(store: ClipStore) -> list[Clip]:
    """Every finished clip folder of the store, by name."""
    folder = store.root / "clips"
    if not folder.is_dir():
        return []
    return [Clip(path) for path in sorted(folder.iterdir())
            if path.is_dir() and not path.name.startswith(".") and Clip(path).is_complete]


def run_steps(store: ClipStore, config: Config) -> dict[str, int]:
    """Run each step of ``preprocess.steps`` on every finished clip that lacks its current output; returns the
    number of clips processed per step. A failing clip raises DataError naming it (the clips done stay done)."""
    done: dict[str, int] = {}
    for name in config["preprocess"]["steps"] or []:
        step = PREPROCESS_STEPS.get(name)(config)
        todo = [clip for clip in complete_clips(store) if not step.is_done(clip)]
        done[step.registered_name] = len(todo)
        if not todo:
            continue
        frames = sum(int(clip.meta.get("frames", 0)) for clip in todo)
        logger.info("preprocessing step %s: %d clips (%d frames)", step.registered_name, len(todo), frames)
        bar = progress_bar(frames, f"{step.registered_name}", "frame", enabled=bool(config["progress"]))
        try:
            for clip in todo:
                try:
                    step.run(clip, bar.update)
                except (ValueError, OSError) as exc:
                    raise DataError(f"{clip.root}: preprocessing step {step.registered_name} failed: {exc}") from exc
        finally:
            bar.close()
    return done
