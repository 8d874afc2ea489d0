"""One benchmark run: a model dubs a video through ``generate`` (the code path of ``talkingface infer``) while a
``StageRecorder`` times its stages, then dubs the first frames again counting FLOPs; the device's matmul limit is
measured before and after in the same process."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..device import resolve_device, resolve_dtype
from ..dubbing import LOOP_STAGES
from ..models.base import has_dubbing_hooks
from ..errors import ConfigError
from ..profiling import OUTSIDE, StageRecorder
from .machine import busy_other_cores, cpu_times, machine_info, matmul_peak_gflops
from .video import FPS, SAMPLE_RATE, talking_head_video

RANDOM_WEIGHTS_NOTE = "random weights in the model's layout (no --checkpoint): the timings hold, the pictures do not"


@dataclass
class RunSpec:
    """What one run dubs, with what, where."""

    model: str
    work: str  # a folder for the inputs and outputs
    checkpoint: str | None = None
    device: str = "auto"
    dtype: str = "fp32"
    size: tuple[int, int] = (1280, 720)
    seconds: float = 2.0
    batch: int | None = None
    video: str | None = None
    audio: str | None = None
    flop_frames: int = 8  # output frames of the FLOP-counting dub (0: no FLOP count; VideoReTalking needs 5+)
    peak_size: int | None = None  # the limit's matmul size (None: 4096 on a CPU, 8192 on a GPU)
    warm_dubs: int = 0  # untimed dubs of the same input first (what a model keeps between dubs, e.g. a target's fit)
    config: dict = field(default_factory=dict)  # config overrides over the model's (tests: tiny networks)

    @classmethod
    def from_dict(cls, data: dict) -> "RunSpec":
        data = dict(data)
        data["size"] = tuple(data.get("size", (1280, 720)))
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


def build_for_run(spec: RunSpec, device: torch.device) -> tuple[Any, list[str]]:
    """The model as ``talkingface infer`` builds it from ``spec.checkpoint``, or with random weights (seed 0) under
    the model's ``benchmark_config``; and the notes the report must carry."""
    from ..config import load_config
    from ..pipeline import build_model, trained_config
    from ..registry import MODELS

    if spec.checkpoint:
        weights, config = trained_config(spec.model, spec.checkpoint, cli_overrides=spec.config)
        model = build_model(spec.model, config).load_checkpoint(weights)
        notes = [f"weights: {spec.checkpoint}"]
    else:
        offline = MODELS.get(spec.model).benchmark_config(Path(spec.work))
        torch.manual_seed(0)
        model = build_model(spec.model, load_config(model=spec.model, config=offline, cli_overrides=spec.config))
        notes = [RANDOM_WEIGHTS_NOTE]
        if offline:
            notes.append(f"offline settings of {spec.model}.benchmark_config: {_flat(offline)}")
    return model.to(device).eval(), notes


def _checkpoint_digest(checkpoint: str | None) -> str | None:
    """The SHA-256 of the weights file behind ``checkpoint`` (a file or a run folder), which names the entry a
    leaderboard matches this run with; None for random weights."""
    if not checkpoint:
        return None
    from ..pipeline import resolve_checkpoint
    from ..weights import sha256_of

    return sha256_of(resolve_checkpoint(checkpoint)[0])


def _flat(tree: dict, prefix: str = "") -> str:
    parts = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        parts.append(_flat(value, name + ".") if isinstance(value, dict) else f"{name}={value}")
    return ", ".join(parts)


def _short_audio(source: Path, frames: int, path: Path) -> Path:
    """The first ``frames`` 25 fps frames of ``source``'s audio as a WAV file (the FLOP-counting dub's length)."""
    from ..media import read_audio, write_wav

    return write_wav(path, read_audio(source, SAMPLE_RATE)[:frames * SAMPLE_RATE // FPS], SAMPLE_RATE)


def stage_rows(timed: StageRecorder, counted: StageRecorder | None, frames: int, counted_frames: int,
               order: tuple[str, ...], peak_gflops: float) -> list[dict]:
    """One row per stage in ``order`` (then any other recorded one, then work outside every stage): calls, seconds,
    share of the wall time, frames/s (output frames over the stage's time), FLOPs per output frame, achieved
    GFLOP/s and its share of ``peak_gflops``, peak RSS and GPU memory while it ran."""
    names = [*order, *(n for n in timed.order if n not in order and n != OUTSIDE), OUTSIDE]
    rows = []
    for name in names:
        stats = timed.stats.get(name)
        flop_stats = counted.stats.get(name) if counted is not None else None
        seconds = stats.seconds if stats else 0.0
        row: dict[str, Any] = {"stage": name, "calls": stats.calls if stats else 0, "seconds": round(seconds, 4),
                               "share_of_wall": round(seconds / timed.wall_seconds, 4) if timed.wall_seconds else None,
                               "frames_per_s": round(frames / seconds, 3) if seconds > 0 else None,
                               "gflop_per_frame": None, "gflops": None, "share_of_limit": None,
                               "peak_rss_mb": round(stats.peak_rss_bytes / 2**20, 1) if stats else None,
                               "peak_gpu_mb": round(stats.peak_gpu_bytes / 2**20, 1) if stats and timed.records_gpu else None}
        if flop_stats is not None and flop_stats.flops and counted_frames:
            per_frame = flop_stats.flops / counted_frames
            row["gflop_per_frame"] = round(per_frame / 1e9, 4)
            if seconds > 0:
                rate = per_frame * frames / seconds / 1e9
                row["gflops"] = round(rate, 2)
                row["share_of_limit"] = round(rate / peak_gflops, 4)
        rows.append(row)
    return rows


def run_once(spec: RunSpec) -> dict:
    """Benchmark ``spec`` in this process; returns the report of the run (``report.RUN_FIELDS``)."""
    from ..media import probe_video
    from ..registry import discover_plugins

    discover_plugins()
    device = resolve_device(spec.device)
    dtype = resolve_dtype(device, spec.dtype)  # a refusal comes before any work
    work = Path(spec.work)
    work.mkdir(parents=True, exist_ok=True)
    width, height = spec.size
    video = Path(spec.video) if spec.video else talking_head_video(
        work / f"head-{width}x{height}-{spec.seconds:g}s.mp4", spec.size, spec.seconds)
    audio = Path(spec.audio) if spec.audio else video
    source = probe_video(video)  # the size reported is the video's own (a given --video keeps its size)
    peaks = {dtype: [matmul_peak_gflops(device, dtype, spec.peak_size)]}
    if dtype != "fp32":
        peaks["fp32"] = [matmul_peak_gflops(device, "fp32", spec.peak_size)]
    model, notes = build_for_run(spec, device)
    if not has_dubbing_hooks(type(model)):
        raise ConfigError(f"model {spec.model!r} dubs with a loop of its own: no stages to benchmark")
    options = {"dtype": dtype, "batch": spec.batch, "progress": False}
    output = work / f"{spec.model}-{dtype}.mp4"
    for _ in range(spec.warm_dubs):
        with torch.no_grad():
            model.generate(video, audio, output, **options)
    before = cpu_times()
    with torch.no_grad(), StageRecorder(cuda=device.type == "cuda") as timed:
        model.generate(video, audio, output, **options)
    other = busy_other_cores(before, cpu_times(), timed.wall_seconds)
    frames = probe_video(output).frame_count
    counted, counted_frames = None, 0
    if spec.flop_frames > 0:
        counted_frames = min(spec.flop_frames, frames)
        short = _short_audio(audio, counted_frames, work / f"flops-{counted_frames}.wav")
        with torch.no_grad(), StageRecorder(flops=True, memory=False) as counted:
            model.generate(video, short, work / f"{spec.model}-{dtype}-flops.mp4", **options)
        notes.append(f"FLOPs counted (torch.utils.flop_counter) in a second dub of the first {counted_frames} frames "
                     "by the same model: work it keeps from the first dub (e.g. a target's 3DMM fit) is not counted")
    for path in work.glob(f"{spec.model}-{dtype}*.mp4"):  # the dubs themselves are not kept
        path.unlink()
    for name in peaks:
        peaks[name].append(matmul_peak_gflops(device, name, spec.peak_size))
    limit = max(peaks[dtype])
    rows = stage_rows(timed, counted, frames, counted_frames, timed.declared, limit)
    flop_rows = [r for r in rows if r["gflop_per_frame"]]
    gflop_per_frame = sum(r["gflop_per_frame"] for r in flop_rows) if flop_rows else None
    total_rate = gflop_per_frame * frames / timed.wall_seconds if gflop_per_frame else None
    return {
        "model": spec.model, "dtype": dtype, "device": str(device), "size": [source.width, source.height],
        "video": str(spec.video or "synthetic talking head"), "frames": frames,
        "checkpoint": spec.checkpoint, "checkpoint_sha256": _checkpoint_digest(spec.checkpoint),
        "batch": spec.batch, "warm_dubs": spec.warm_dubs, "wall_seconds": round(timed.wall_seconds, 3),
        "frames_per_s": round(frames / timed.wall_seconds, 3),
        "gflop_per_frame": round(gflop_per_frame, 4) if gflop_per_frame else None,
        "share_of_limit": round(total_rate / limit, 4) if total_rate else None,
        "peak_rss_mb": max((r["peak_rss_mb"] or 0) for r in rows),
        "peak_gpu_mb": max((r["peak_gpu_mb"] or 0) for r in rows) if device.type == "cuda" else None,
        "matmul_peak_gflops": {name: [round(p, 1) for p in values] for name, values in peaks.items()},
        "limit_gflops": round(limit, 1), "rss_peaks_exact": timed.memory_resettable,
        "other_busy_cores": other, "declared_stages": list(timed.declared[len(LOOP_STAGES):]), "stages": rows,
        "machine": machine_info(device), "notes": notes, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
