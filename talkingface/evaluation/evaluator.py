"""Streaming (generated, reference) video pairs through registered metrics."""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..io_utils import atomic_write, atomic_write_json
from ..log import progress_bar
from ..registry import METRICS
from .metric import Metric, VideoSample

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

    def evaluate(self, pairs: Iterable[tuple[str, Path, Path | None]]) -> EvaluationResult:
        """Score ``(name, generated_path, reference_path_or_None)`` pairs."""
        pairs = list(pairs)
        for metric in self.metrics.values():
            metric.reset()
        result = EvaluationResult(skipped=dict(self.skipped))
        bar = progress_bar(len(pairs), "evaluate", "video", enabled=self.progress)
        for name, generated_path, reference_path in pairs:
            generated = VideoSample(Path(generated_path))
            reference = VideoSample(Path(reference_path)) if reference_path else None
            row: dict[str, Any] = {"video": name}
            for metric_name, metric in self.metrics.items():
                if metric.needs_reference and reference is None:
                    result.skipped.setdefault(metric_name, "skipped (needs reference videos)")
                    continue
                row.update(metric.update(generated, reference))
            result.rows.append(row)
            bar.update(1)
        bar.close()
        for metric_name, metric in self.metrics.items():
            if metric_name not in result.skipped:
                result.summary.update(metric.compute())
        return result
