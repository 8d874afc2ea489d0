"""End-to-end dubs and memory-vs-length series for the model scripts, measured by ``talkingface benchmark``'s own
code: each dub runs in a child process through ``generate`` (``talkingface.benchmark.run.run_once``) with the
stages the loop and the model's hooks mark (``talkingface.profiling.StageRecorder``: exclusive seconds, peak RSS
per stage from ``VmHWM``, FLOPs in a short second dub). The scripts add only what the command cannot do: other
configurations of the same model, the official code side by side, and how memory grows with the video's length.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from talkingface.benchmark.command import run_in_child
from talkingface.benchmark.run import RunSpec

STAGE_KEYS = ("calls", "seconds", "share_of_wall", "frames_per_s", "gflop_per_frame", "share_of_limit", "peak_rss_mb")


def compact(report: dict) -> dict:
    """A run report cut to what the scripts quote: the totals and, per stage that ran, ``STAGE_KEYS``."""
    keys = ("frames", "wall_seconds", "frames_per_s", "gflop_per_frame", "share_of_limit", "peak_rss_mb",
            "limit_gflops", "other_busy_cores", "warm_dubs", "notes")
    stages = {row["stage"]: {k: row[k] for k in STAGE_KEYS if row.get(k) is not None}
              for row in report["stages"] if row["calls"]}
    return {**{k: report.get(k) for k in keys}, "stages": stages}


def dub_run(model: str, work: Path, video: Path, config: dict, threads: int, warm_dubs: int = 0,
            flop_frames: int = 0, audio: Path | None = None) -> dict:
    """``generate`` of ``video`` (its own audio unless ``audio``) by ``model`` with random weights under the model's
    ``benchmark_config`` and ``config`` on top, in a child process on ``threads`` threads, after ``warm_dubs``
    untimed dubs; the compacted stage report. Raises when the child failed."""
    spec = RunSpec(model=model, work=str(work), video=str(video), audio=str(audio) if audio else None,
                   flop_frames=flop_frames, warm_dubs=warm_dubs, config=config)
    report = run_in_child(spec, threads)
    if "error" in report:
        raise RuntimeError(f"{model} dub of {video}: {report['error']}")
    return compact(report)


def memory_series(model: str, work: Path, videos: dict[float, Path], config: dict, threads: int) -> dict:
    """One ``dub_run`` per video length (seconds -> video): the peak RSS of each run and of each stage, and how the
    peak grows per minute of video between the shortest and the longest."""
    runs = {seconds: dub_run(model, work, path, config, threads) for seconds, path in sorted(videos.items())}
    result: dict[str, Any] = {"runs": [{"video_seconds": s, **r} for s, r in runs.items()]}
    if len(runs) > 1:
        (first, short), (last, long) = list(runs.items())[0], list(runs.items())[-1]
        minutes = (last - first) / 60
        growth = {"peak_rss_mb_per_minute": round((long["peak_rss_mb"] - short["peak_rss_mb"]) / minutes, 1)}
        for name, row in long["stages"].items():
            before = short["stages"].get(name, {}).get("peak_rss_mb")
            if before is not None and row.get("peak_rss_mb") is not None:
                growth[f"{name}_peak_rss_mb_per_minute"] = round((row["peak_rss_mb"] - before) / minutes, 1)
        result["growth"] = growth
    return result
