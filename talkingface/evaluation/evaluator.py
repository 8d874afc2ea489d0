"""Streaming (generated, reference) video pairs through registered metrics."""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..io_utils import atomic_write, atomic_write_json
from ..log import progress_bar
from ..registry import METRICS
from .metric import Metric, VideoSample, config_option

logger = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """Aggregates (``summary``), per-video rows, and metrics skipped with their reason."""

    summary: dict[str, float] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "skipped": self.skipped, "videos": self.rows}

    def save(self, output_dir: str | Path, stem: str = "metrics") -> tuple[Path, Path]:
        """Write ``<stem>.json`` (everything) and ``<stem>.csv`` (per-video rows), atomically."""
        output_dir = Path(output_dir)
        json_path = atomic_write_json(output_dir / f"{stem}.json", self.as_dict())
        columns = sorted({k for row in self.rows for k in row}, key=lambda k: (k != "video", k))

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(self.rows)

        csv_path = atomic_write(output_dir / f"{stem}.csv", write)
        return json_path, csv_path


class Evaluator:
    """Builds the named metrics once and scores video pairs with them."""

    def __init__(self, metric_names: Sequence[str], config: Any = None, progress: bool = True):
        self.metrics: dict[str, Metric] = {}
        self.skipped: dict[str, str] = {}
        for name in metric_names:
            metric = METRICS.get(name)(config)
            reason = metric.unavailable()
            if reason:
                self.skipped[metric.registered_name] = f"skipped ({reason})"
                logger.warning("metric %s skipped: %s", metric.registered_name, reason)
            else:
                self.metrics[metric.registered_name] = metric
        self.progress = progress
        self.settings = evaluation_settings(config)

    def evaluate(self, pairs: Iterable[tuple[str, Path, Path | None]], resume_file: str | Path | None = None,
                 reference_caches: dict[Path, dict] | None = None) -> EvaluationResult:
        """Score ``(name, generated_path, reference_path_or_None)`` pairs.

        ``reference_caches`` (reference path -> ``VideoSample.cache``) lets several calls that score against
        the same references share what the metrics measured on them (face tracks, lip gaps) instead of
        measuring it again; the dict is filled as references are scored.

        With ``resume_file`` each video's row is appended to that JSON-lines file as soon as it is
        scored, and a rerun reuses the rows of unchanged videos (same size, mtime and metric list)
        instead of decoding and scoring them again. Pooled metrics (``Metric.pooled``, e.g. FID) need
        every video's frames and are always recomputed.
        """
        pairs = list(pairs)
        for metric in self.metrics.values():
            metric.reset()
        cache = RowCache(resume_file, sorted(self.metrics), self.settings) if resume_file else None
        result = EvaluationResult(skipped=dict(self.skipped))
        bar = progress_bar(len(pairs), "evaluate", "video", enabled=self.progress)
        reused = 0
        for name, generated_path, reference_path in pairs:
            generated = VideoSample(Path(generated_path))
            reference = None
            if reference_path:
                shared = reference_caches.setdefault(Path(reference_path), {}) if reference_caches is not None else {}
                reference = VideoSample(Path(reference_path), cache=shared)
            cached = cache.get(name, generated.path, reference_path) if cache else None
            scores: dict[str, dict[str, float]] = {}
            for metric_name, metric in self.metrics.items():
                if metric.needs_reference and reference is None:
                    result.skipped.setdefault(metric_name, "skipped (needs reference videos)")
                    continue
                if cached is not None and not metric.pooled:
                    scores[metric_name] = metric.restore(cached[metric_name])
                else:
                    scores[metric_name] = metric.update(generated, reference)
            reused += cached is not None
            if cache and cached is None:
                cache.add(name, generated.path, reference_path, scores)
            result.rows.append({"video": name, **{k: v for values in scores.values() for k, v in values.items()}})
            bar.update(1)
        bar.close()
        if reused:
            logger.info("reused the scores of %d of %d videos from %s", reused, len(pairs), resume_file)
        for metric_name, metric in self.metrics.items():
            if metric_name not in result.skipped:
                result.summary.update(metric.compute())
        return result


def evaluation_settings(config: Any) -> str:
    """What a saved score depends on besides the files: the ``evaluate`` options, the face backend and its
    options, as canonical JSON."""
    keys = ("evaluate", "preprocess.face_backend", "preprocess.detect_every", "preprocess.max_gap",
            "preprocess.smoothing_window")
    backend = config_option(config, "preprocess.face_backend", None)
    values = {key: config_option(config, key, None) for key in keys + ((backend,) if backend else ())}
    return json.dumps(values, sort_keys=True, default=str)


class RowCache:
    """Per-video rows of an interrupted evaluation, keyed by video name, file identity and settings."""

    def __init__(self, path: str | Path, metric_names: Sequence[str], settings: str = ""):
        self.path = Path(path)
        self.metric_names = list(metric_names)
        self.settings = settings
        self.rows: dict[str, dict] = {}
        text = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
        self._cut_short = bool(text) and not text.endswith("\n")  # the next row must start a new line
        if text:
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:  # a line cut short by an interruption
                    continue
                self.rows[entry["video"]] = entry

    @staticmethod
    def _identity(generated: Path, reference: Path | None) -> list:
        stats = [generated.stat()] + ([Path(reference).stat()] if reference else [])
        return [[s.st_size, s.st_mtime_ns] for s in stats]

    def get(self, name: str, generated: Path, reference: Path | None) -> dict | None:
        """``{metric: {key: value}}`` saved for this video, or None when absent or stale."""
        entry = self.rows.get(name)
        if entry is None or entry["metrics"] != self.metric_names or entry.get("settings") != self.settings or \
                entry["identity"] != self._identity(generated, reference):
            return None
        return entry["scores"]

    def add(self, name: str, generated: Path, reference: Path | None, scores: dict) -> None:
        entry = {"video": name, "metrics": self.metric_names, "settings": self.settings,
                 "identity": self._identity(generated, reference), "scores": scores}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(("\n" if self._cut_short else "") + json.dumps(entry, default=float) + "\n")
        self._cut_short = False
