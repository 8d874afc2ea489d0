"""The benchmark's report: terminal tables (texttable), the JSON beside them and a PNG bar chart of the stages."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from texttable import Texttable

# what every run's report holds (tests check each is present)
RUN_FIELDS = ("model", "dtype", "device", "size", "frames", "wall_seconds", "frames_per_s", "gflop_per_frame",
              "share_of_limit", "peak_rss_mb", "peak_gpu_mb", "matmul_peak_gflops", "limit_gflops", "stages",
              "declared_stages", "machine", "notes", "other_busy_cores")
STAGE_FIELDS = ("stage", "calls", "seconds", "share_of_wall", "frames_per_s", "gflop_per_frame", "gflops",
                "share_of_limit", "peak_rss_mb", "peak_gpu_mb")


def _cell(value: Any, percent: bool = False) -> str:
    if value is None:
        return "-"
    if percent:
        return f"{100 * value:.1f}%"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _table(header: list[str], rows: Iterable[list[str]], align: str) -> str:
    table = Texttable(max_width=0)
    table.set_deco(Texttable.HEADER | Texttable.VLINES | Texttable.BORDER)
    table.set_cols_dtype(["t"] * len(header))
    table.set_cols_align(list(align))
    table.add_rows([header, *rows])
    return table.draw()


def stage_table(run: dict) -> str:
    """One run's stages: time, share of the wall time, frames/s, GFLOP per frame, share of the limit, memory."""
    gpu = run.get("peak_gpu_mb") is not None
    header = ["stage", "calls", "seconds", "of wall", "frames/s", "GFLOP/frame", "GFLOP/s", "of limit", "peak RSS MB"]
    if gpu:
        header.append("peak GPU MB")
    rows = []
    for s in run["stages"]:
        if not s["calls"] and not s["seconds"]:
            row = [s["stage"], "not run"] + ["-"] * (len(header) - 2)
        else:
            row = [s["stage"], _cell(s["calls"]), _cell(s["seconds"]), _cell(s["share_of_wall"], True),
                   _cell(s["frames_per_s"]), _cell(s["gflop_per_frame"]), _cell(s["gflops"]),
                   _cell(s["share_of_limit"], True), _cell(s["peak_rss_mb"])]
            if gpu:
                row.append(_cell(s["peak_gpu_mb"]))
        rows.append(row)
    rows.append(["end to end", "", _cell(run["wall_seconds"]), "100.0%", _cell(run["frames_per_s"]),
                 _cell(run["gflop_per_frame"]), "", _cell(run["share_of_limit"], True), _cell(run["peak_rss_mb"])]
                + ([_cell(run["peak_gpu_mb"])] if gpu else []))
    title = (f"{run['model']} {run['dtype']} on {run['device']}: {run['frames']} frames at "
             f"{run['size'][0]}x{run['size'][1]}, limit {run['limit_gflops']} GFLOP/s ({run['dtype']} matmul)")
    return title + "\n" + _table(header, rows, "lrrrrrrrr" + ("r" if gpu else ""))


def summary_table(runs: list[dict]) -> str:
    """One row per run: end-to-end frames/s, share of the limit, the slowest stage, peak memory; bf16 beside fp32."""
    fp32 = {(r["model"], tuple(r["size"])): r for r in runs if r["dtype"] == "fp32"}
    header = ["model", "dtype", "frames", "frames/s", "x fp32", "GFLOP/frame", "of limit", "slowest stage",
              "peak RSS MB"]
    rows = []
    for run in runs:
        base = fp32.get((run["model"], tuple(run["size"])))
        speedup = run["frames_per_s"] / base["frames_per_s"] if base and run is not base else None
        slowest = max(run["stages"], key=lambda s: s["seconds"])
        rows.append([run["model"], run["dtype"], _cell(run["frames"]), _cell(run["frames_per_s"]),
                     _cell(speedup), _cell(run["gflop_per_frame"]), _cell(run["share_of_limit"], True),
                     f"{slowest['stage']} ({_cell(slowest['share_of_wall'], True)})", _cell(run["peak_rss_mb"])])
    return _table(header, rows, "llrrrrrlr")


def machine_line(machine: dict) -> str:
    flags = ", ".join(machine["cpu_flags"]) or "none of the reported flags"
    return (f"{machine['device_name']} ({machine['device']}); CPU {machine['cpu']} [{flags}], "
            f"{machine['logical_cores']} logical cores, {machine['torch_threads']} torch threads, ATen "
            f"{machine['aten_cpu_capability']}; torch {machine['torch']}")


def write_chart(runs: list[dict], path: Path) -> Path:
    """A PNG with one horizontal bar chart per run: seconds per stage, labelled with the share of the wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io_utils import atomic_path

    heights = [max(len([s for s in r["stages"] if s["seconds"] > 0]), 1) for r in runs]
    figure, axes = plt.subplots(len(runs), 1, figsize=(9, sum(0.32 * h + 0.9 for h in heights)), squeeze=False,
                                gridspec_kw={"height_ratios": heights})
    for axis, run in zip(axes[:, 0], runs):
        stages = [s for s in run["stages"] if s["seconds"] > 0]
        names = [s["stage"] for s in stages][::-1]
        seconds = [s["seconds"] for s in stages][::-1]
        bars = axis.barh(names, seconds, color="#4c72b0")
        for bar, stage in zip(bars, stages[::-1]):
            label = f" {100 * stage['share_of_wall']:.1f}%"
            if stage["share_of_limit"] is not None:
                label += f", {100 * stage['share_of_limit']:.0f}% of limit"
            axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=7)
        axis.set_title(f"{run['model']} {run['dtype']} {run['size'][0]}x{run['size'][1]} on {run['device']}: "
                       f"{run['frames_per_s']:.3g} frames/s end to end", fontsize=9)
        axis.set_xlabel("seconds", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.set_xlim(0, max(seconds, default=1) * 1.45)
    figure.tight_layout()
    with atomic_path(path) as partial:
        figure.savefig(partial, format="png", dpi=110)
    plt.close(figure)
    return path


def render(report: dict) -> str:
    """The terminal text of a whole report: the machine, each run's stages, the summary."""
    parts = [f"machine: {machine_line(report['runs'][0]['machine'])}"] if report["runs"] else []
    for run in report["runs"]:
        parts += ["", stage_table(run)]
        parts += [f"  note: {note}" for note in run["notes"]]
    if report["runs"]:
        parts += ["", "summary (x fp32: frames/s over the fp32 run of the same model and size)",
                  summary_table(report["runs"])]
    for failure in report.get("failures", []):
        parts.append(f"FAILED {failure['model']} {failure['dtype']}: {failure['error']}")
    parts.append(f"took {report['wall_seconds']:.1f} s")
    return "\n".join(parts)

