"""Scalar logging to CSV and the loss plot written at the end of training."""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Mapping

from ..io_utils import atomic_write


class ScalarLog:
    """Appends ``step,epoch,name,value`` rows to a CSV file (kept across resumes)."""

    FIELDS = ("step", "epoch", "name", "value")

    def __init__(self, path: str | Path, resume_from_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_from_step is not None and self.path.exists():
            self._truncate_after(resume_from_step)
        if not self.path.exists():
            with open(self.path, "w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerow(self.FIELDS)

    def _truncate_after(self, step: int) -> None:
        """Drop rows logged after the checkpoint being resumed, so the log matches the weights."""
        rows = [r for r in self.read() if int(r["step"]) <= step]

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.FIELDS)
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(self.path, write)

    def log(self, step: int, epoch: int, scalars: Mapping[str, float]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            for name, value in scalars.items():
                writer.writerow((step, epoch, name, f"{float(value):.6g}"))

    def read(self) -> list[dict]:
        with open(self.path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))


def plot_scalars(log: ScalarLog, output: str | Path) -> Path | None:
    """Plot every logged series against step into one PNG (train and val panels)."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in log.read():
        series[row["name"]].append((int(row["step"]), float(row["value"])))
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({name.split("/", 1)[0] for name in series})
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 3 * len(groups)), squeeze=False)
    for ax, group in zip(axes[:, 0], groups):
        for name in sorted(n for n in series if n.split("/", 1)[0] == group):
            steps, values = zip(*series[name])
            ax.plot(steps, values, label=name, marker="." if len(steps) < 30 else None)
        ax.set_xlabel("optimizer step")
        ax.set_title(group)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    atomic_write(output, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return Path(output)
