"""``talkingface benchmark``: every (model, dtype) run in a child process of its own (its memory peaks are its own),
one report of them all: terminal tables, ``benchmark.json``, ``benchmark.png`` and ``benchmark.txt`` in ``--out``."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError, TalkingFaceError
from .run import RunSpec

CHILD = "talkingface.benchmark.child"


def dubbing_models() -> list[str]:
    """Registered models that dub through the shared loop (``dubbing_hooks`` overridden), in registry order."""
    from ..models.base import has_dubbing_hooks
    from ..registry import MODELS, discover_plugins

    discover_plugins()
    return [name for name in MODELS.names() if has_dubbing_hooks(MODELS.get(name))]


def expand_models(names: Sequence[str]) -> list[str]:
    """``all`` -> every dubbing model; otherwise the names, checked against the registry."""
    from ..registry import MODELS, discover_plugins

    discover_plugins()
    if list(names) == ["all"]:
        return dubbing_models()
    for name in names:
        MODELS.get(name)  # RegistryError naming the known ones
    return list(names)


def run_in_child(spec: RunSpec, threads: int | None = None) -> dict:
    """``run_once(spec)`` in a fresh Python process; its report, or ``{"error": ...}`` when it failed."""
    command = [sys.executable, "-m", CHILD, json.dumps(spec.to_dict())]
    if threads:
        command += ["--threads", str(threads)]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=None, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"the child process exited with {result.returncode} and no report"}
    return json.loads(lines[-1])


def benchmark(models: Sequence[str], dtypes: Sequence[str], out: str | Path, work: str | Path | None = None,
              threads: int | None = None, **spec: object) -> dict:
    """Run every model in ``models`` (or ``["all"]``) at every dtype in ``dtypes``, each in a child process; write
    the report into ``out`` and return it (``runs``, ``failures``, ``wall_seconds``)."""
    from ..io_utils import atomic_write_json, atomic_write_text
    from .report import render, write_chart

    began = time.perf_counter()
    out = Path(out)
    work = Path(work) if work else out / "work"
    names = expand_models(models)
    runs, failures = [], []
    jobs = [(name, dtype) for name in names for dtype in dtypes]
    for k, (name, dtype) in enumerate(jobs, 1):
        print(f"[{k}/{len(jobs)}] {name} {dtype} ...", file=sys.stderr, flush=True)
        result = run_in_child(RunSpec(model=name, work=str(work), dtype=dtype, **spec), threads)
        if "error" in result:
            failures.append({"model": name, "dtype": dtype, "error": result["error"]})
            print(f"[{k}/{len(jobs)}] {name} {dtype}: FAILED: {result['error']}", file=sys.stderr, flush=True)
        else:
            runs.append(result)
            print(f"[{k}/{len(jobs)}] {name} {dtype}: {result['frames_per_s']} frames/s end to end",
                  file=sys.stderr, flush=True)
    report = {"command": " ".join(["talkingface", *sys.argv[1:]]) if sys.argv[1:2] == ["benchmark"] else None,
              "runs": runs, "failures": failures, "wall_seconds": round(time.perf_counter() - began, 1)}
    out.mkdir(parents=True, exist_ok=True)
    text = render(report)
    if runs:
        write_chart(runs, out / "benchmark.png")
    atomic_write_json(out / "benchmark.json", report)
    atomic_write_text(out / "benchmark.txt", text + "\n")
    print(text)
    return report


def main(args: object) -> int:
    """The CLI's ``benchmark`` command (``args`` from ``cli.main_parser``)."""
    from .video import parse_size

    if args.seconds <= 0:
        raise ConfigError(f"--seconds must be positive, got {args.seconds}")
    if args.checkpoint and args.model == ["all"]:
        raise ConfigError("--checkpoint belongs to one model; give --model NAME with it")
    if args.video and not Path(args.video).is_file():
        raise TalkingFaceError(f"--video {args.video} not found")
    report = benchmark(args.model, args.dtype, args.out, args.work, args.threads, checkpoint=args.checkpoint,
                       device=args.device, size=parse_size(args.size), seconds=float(args.seconds),
                       batch=args.batch, video=args.video, audio=args.audio, flop_frames=int(args.flop_frames))
    return 1 if report["failures"] else 0
