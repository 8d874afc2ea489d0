"""Speed beside quality: frames/s from ``talkingface benchmark`` reports (``benchmark.json``) of the same entries,
matched by model and the SHA-256 of the checkpoint's weights, measured on this machine (its CPU model)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import ConfigError

logger = logging.getLogger(__name__)


def this_cpu() -> str:
    from ..benchmark.machine import cpu_model

    return cpu_model()


@dataclass
class SpeedTable:
    """The benchmark runs that may give an entry its frames/s (those made on this machine)."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, files: Iterable[str | Path]) -> "SpeedTable":
        table = cls()
        cpu = None
        for path in map(Path, files):
            try:
                report = json.loads(path.read_text(encoding="utf-8"))
                runs = list(report["runs"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"--speed {path}: not a talkingface benchmark report ({exc})") from None
            cpu = cpu or this_cpu()
            mine = [run for run in runs if run.get("machine", {}).get("device_name") == cpu]
            if len(mine) < len(runs):
                logger.warning("%s: %d of %d runs were made on another machine and are not used",
                               path, len(runs) - len(mine), len(runs))
            table.runs += mine
            table.files.append(str(path))
        return table

    def lookup(self, model: str, checkpoint_sha256: str) -> dict[str, Any] | None:
        """frames/s of ``model`` with these weights, per dtype (fp32 first), or None when never benchmarked."""
        found = [run for run in self.runs if run.get("model") == model
                 and run.get("checkpoint_sha256") == checkpoint_sha256]
        if not found:
            return None
        order = {"fp32": 0, "bf16": 1, "fp16": 2}
        found.sort(key=lambda run: order.get(run.get("dtype"), 9))
        first = found[0]
        return {"frames_per_s": {run["dtype"]: run["frames_per_s"] for run in found},
                "size": first.get("size"), "device": first.get("machine", {}).get("device_name"),
                "threads": first.get("machine", {}).get("torch_threads")}

    def note(self) -> str | None:
        if not self.runs:
            return None
        run = self.runs[0]
        machine, size = run.get("machine", {}), run.get("size") or ["?", "?"]
        return (f"frames/s: talkingface benchmark ({', '.join(self.files)}) on {machine.get('device_name')}, "
                f"{machine.get('torch_threads')} threads, end to end at {size[0]}x{size[1]}")
