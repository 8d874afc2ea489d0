"""AudioDVP dubbing on 2 CPU threads: frames/s of the target's 3DMM fit, of the renders and masks, of the networks
(the neural renderer at 256², AT-net + Audio2Expression) and of ``generate`` end to end, the networks as shares of
the fp32 matmul limit; peak RSS against video length. Writes benchmarks/results/audiodvp_dubbing.json.

Random weights in the released layouts (timing only): ``build_model("audiodvp")`` with its defaults
(``audio_encoder: atnet``, ``atnet_fallback: train``: AT-net's encoder with random weights, Audio2Expression,
``UnetGenerator(21, 3, 8, 64)`` with the refine modules, 141 M parameters, image_size 256). The face model is the
synthetic stand-in (``write_standin_bfm(folder, vertices, audiodvp=True)``): 1,000 vertices, and a BFM-sized one
(35,709 vertices, 70,789 triangles) for the fit and the renders. Input: a synthetic 1280 x 720 talking head at 25 fps
(scikit-image's astronaut, face ~300 px, swaying 3 px, a 220 Hz tone; ``videoretalking_dubbing.head_video``),
landmarks from the loop's face tracking (dlib).

Stages (docs/audiodvp.md, "Dubbing"), one output frame each:
- fit: ``target.fit_target`` on the first ``--fit-frames`` frames (AudioDVP's convention, the 256 portrait crop,
  the default ``FitSettings`` of configs/overall.yaml's ``face3d.fit``), split into the key-frame phase (identity and
  albedo on 12 key frames, a fixed cost per video) and the per-frame phase (batches of 16). No FLOP ratio: the fit
  is scatter/gather work (rasterizer, per-vertex normals), not matrix products (docs/face3d.md).
- renders: ``FaceRenderer(model, 256).render(coeffs, lower=True)`` of the 7 window frames (the dub's 7 renders per
  output frame, one batched call) and the blend weight of the shown frame (``mouth_mask`` + ``composite_alpha``: two
  more renders, dilation, erosion, blur), on the fitted coefficients. No FLOP ratio either.
- networks: the neural renderer (eval) at 256² at batch 1 and 4; AT-net (7 feature rows) + Audio2Expression (one
  window) per output frame (the dub's steady state: each output frame adds one new window frame, the other six
  renders are kept, ``Reenactment.renders``); the whole generator call (``Reenactment``: expressions, renders, the
  renderer network) at batch 1 with the 1,000-vertex stand-in on consecutive output frames (its FLOPs counted on a
  warm call: one new window frame). GFLOP per frame from
  ``torch.utils.flop_counter`` (convolutions and matrix products), share = GFLOP/s / the best fp32 matmul rate of the
  run (``trainer_overhead.matmul_peak_gflops``).
- end to end: ``model.generate(video, video, out)`` on a ``--e2e-seconds`` 720p clip (its own tone as the audio),
  measured as ``talkingface benchmark`` measures (``dub_runs.dub_run``: a child process, the stages the loop and the
  hooks mark: tracking, 3dmm fit, blend weights, audio to expression, render, generator, paste, decode, encode, ...),
  the 1,000-vertex stand-in and the default fit schedule; the first dub fits the target, the second follows an
  untimed dub of the same video and reuses the fit (``loaded_once``).
- peak RSS: the same measuring on a 10 s and a 60 s 720p clip (``dub_runs.memory_series``: VmHWM per stage), with
  the cheap configuration ``CHEAP`` (1,000-vertex stand-in, a short fit schedule, small networks) so that a minute
  of video dubs in minutes; the released networks' weights add their size (``parameters``) to every run alike.

    .venv-test/bin/python benchmarks/audiodvp_dubbing.py            # the default run (~12 min on 2 cores)
    .venv-test/bin/python benchmarks/audiodvp_dubbing.py --quick    # a smoke run (~1.5 min), writes nothing

The run waits (up to ``--wait-minutes``, 10) for the 1-minute load average to fall below ``--wait-load`` (0.7) first
and records the load before and after; every timing records ``other_cpu_cores``, the cores other processes kept busy
meanwhile (``Contention``), so a disturbed stage shows.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dub_runs import dub_run, memory_series  # noqa: E402
from trainer_overhead import matmul_peak_gflops  # noqa: E402
from videoretalking_dubbing import cpu_model, gflop, head_frame, head_video, wait_for_quiet  # noqa: E402
from talkingface.benchmark.machine import busy_other_cores, cpu_times  # noqa: E402
from talkingface.io_utils import atomic_write_json  # noqa: E402

OUTPUT = HERE / "results" / "audiodvp_dubbing.json"
THREADS = 2
FPS = 25
WINDOW = 7
SMALL_VERTICES = 1000
BFM_VERTICES = 35709
SHORT_FIT = {"key_frames": 2, "key_landmark_steps": 20, "key_steps": 2, "frame_landmark_steps": 10, "frame_steps": 1}
# the memory runs' configuration: everything the dub does, with small networks and a short fit
RELEASED = {"audio_encoder": "atnet", "atnet_fallback": "train"}  # random weights in the released layouts
CHEAP = {"audiodvp": {"audio_encoder": "feature", "audio_feature": "mfcc", "renderer": {"num_downs": 8, "ngf": 4},
                      "discriminator": {"ndf": 4, "n_layers": 1}},
         "face3d": {"fit": SHORT_FIT}}


# ---- helpers ------------------------------------------------------------------------------------------------------
class Contention:
    """Cores busy with other processes while a stage ran (``talkingface.benchmark.machine.busy_other_cores``: the
    machine's busy time less this process's and its waited-for children's, over the wall time). Another engineer's
    tests on this 2-core machine show up here; a stage with more than ~0.2 is not quotable."""

    def __enter__(self) -> "Contention":
        self.cores = None
        self._start = (cpu_times(), time.perf_counter())
        return self

    def __exit__(self, *exc) -> None:
        times, wall = self._start
        self.cores = busy_other_cores(times, cpu_times(), time.perf_counter() - wall)


def standin(work: Path, vertices: int) -> Path:
    from talkingface.face3d import write_standin_bfm

    folder = work / f"bfm{vertices}"
    if not (folder / "data.mat").is_file():
        write_standin_bfm(folder, vertices, raw=False, derived=False, audiodvp=True)
    return folder


def merge(base: dict, more: dict) -> dict:
    out = dict(base)
    for key, value in more.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def build_model(bfm: Path, overrides: dict | None = None):
    import talkingface

    torch.manual_seed(0)
    config = merge({"progress": False, "face3d": {"bfm_folder": str(bfm)},
                    "audiodvp": RELEASED}, overrides or {})
    return talkingface.build_model("audiodvp", config).eval()


def track(video: Path, config) -> tuple[np.ndarray, np.ndarray, float]:
    """The loop's face tracking (dlib by default): landmarks, valid and seconds."""
    from talkingface.dubbing.faces import track_landmarks

    start = time.perf_counter()
    landmarks, valid = track_landmarks(video, FPS, None, config, None, 0, False, "audiodvp")
    return landmarks, valid, time.perf_counter() - start


def timed_calls(calls: list[Callable[[], Any]], frames_per_call: int, rounds: int) -> dict:
    """frames/s of ``calls`` (after one warm-up call), best of ``rounds``."""
    with torch.no_grad():
        calls[0]()
        rates, others = [], []
        for _ in range(rounds):
            gc.collect()
            with Contention() as contention:
                start = time.perf_counter()
                for call in calls:
                    call()
                rates.append(len(calls) * frames_per_call / (time.perf_counter() - start))
            others.append(contention.cores)
    top = max(rates)
    row = {"frames": len(calls) * frames_per_call, "frames_per_s": round(top, 4),
           "ms_per_frame": round(1e3 / top, 2), "other_cpu_cores": others[rates.index(top)]}
    if len(rates) > 1:
        row["frames_per_s_rounds"] = [round(r, 4) for r in rates]
    return row


def with_flops(row: dict, gflop_per_frame: float, peak: float) -> dict:
    rate = row["frames_per_s"] * gflop_per_frame
    return {**row, "gflop_per_frame": round(gflop_per_frame, 3), "gflop_per_s": round(rate, 2),
            "share_of_matmul_peak": round(rate / peak, 4)}


class FitPhases:
    """``target.fit_video`` wrapped: the seconds of the key-frame phase (until ``frames()`` is called the second
    time) and of the per-frame phase."""

    def __init__(self):
        import talkingface.models.audiodvp.target as target

        self.target, self.original = target, target.fit_video
        self.runs: list[dict] = []
        target.fit_video = self

    def __call__(self, model, frames, landmarks, *args, **kwargs):
        marks: list[float] = []

        def marked():
            marks.append(time.perf_counter())
            return frames()

        start = time.perf_counter()
        result = self.original(model, marked, landmarks, *args, **kwargs)
        end = time.perf_counter()
        split = marks[1] if len(marks) > 1 else start
        self.runs.append({"frames": len(landmarks), "key_phase_seconds": round(split - start, 2),
                          "frame_phase_seconds": round(end - split, 2)})
        return result

    def close(self) -> None:
        self.target.fit_video = self.original


# ---- stages in this process ---------------------------------------------------------------------------------------
def fit_stage(video: Path, landmarks: np.ndarray, valid: np.ndarray, bfm: Path, config,
              frames: int) -> tuple[dict, np.ndarray]:
    """The target fit of the first ``frames`` frames with the face model in ``bfm``: the row and the coefficients."""
    from talkingface.face3d import ParametricFaceModel
    from talkingface.models.audiodvp.target import fit_target

    face_model = ParametricFaceModel(str(bfm), convention="audiodvp")
    phases = FitPhases()
    try:
        with Contention() as contention:
            start = time.perf_counter()
            fit = fit_target(video, FPS, landmarks[:frames], valid[:frames], (1280, 720), face_model, config,
                     torch.device("cpu"))
            seconds = time.perf_counter() - start
    finally:
        phases.close()
    run = phases.runs[-1]
    per_frame = run["frame_phase_seconds"] / frames
    row = {"frames": frames, "seconds": round(seconds, 2), "frames_per_s": round(frames / seconds, 4), **run,
           "frame_phase_frames_per_s": round(1 / per_frame, 4),
           "frames_per_s_60s_video": round(60 * FPS / (run["key_phase_seconds"] + 60 * FPS * per_frame), 4),
           "vertices": int(face_model.num_vertices), "triangles": int(face_model.tensor("face_buf").shape[0]),
           "portrait_box_left_top_size": [int(v) for v in fit.box], "other_cpu_cores": contention.cores}
    return row, fit.coeffs


def render_stage(bfm: Path, coeffs: np.ndarray, frames: int, rounds: int) -> dict:
    """The dub's 7 lower-face renders per output frame, and the blend weight of a shown frame."""
    from talkingface.face3d import ParametricFaceModel
    from talkingface.models.audiodvp.rendering import FaceRenderer

    faces = FaceRenderer(ParametricFaceModel(str(bfm), convention="audiodvp"), 256)
    table = torch.from_numpy(np.asarray(coeffs, np.float32))
    count = len(table)
    windows = [table[np.clip(np.arange(k - 3, k + 4), 0, count - 1)] for k in range(frames)]
    singles = [table[k % count:k % count + 1] for k in range(frames)]
    seven = timed_calls([lambda w=w: faces.render(w, lower=True) for w in windows], 1, rounds)
    alpha = timed_calls([lambda c=c: faces.composite_alpha(faces.mouth_mask(c)) for c in singles], 1, rounds)
    both = 1 / (1 / seven["frames_per_s"] + 1 / alpha["frames_per_s"])
    return {"render_7_lower": seven, "mouth_mask_and_alpha": alpha,
            "together": {"frames_per_s": round(both, 4), "ms_per_frame": round(1e3 / both, 2)}}


def network_stage(model, bfm: Path, coeffs: np.ndarray, frames: int, batch: int, rounds: int, peak: float) -> dict:
    from talkingface.face3d import ParametricFaceModel
    from talkingface.models.audiodvp.dubbing import Reenactment
    from talkingface.models.audiodvp.rendering import FaceRenderer

    unet = model.renderer.eval()
    size = model.image_size
    generator = torch.Generator().manual_seed(0)
    inputs = {b: torch.rand(b, 3 * WINDOW, size, size, generator=generator) * 2 - 1 for b in sorted({1, batch})}
    out: dict[str, Any] = {}
    unet_flops = gflop(lambda: unet(inputs[1]))
    for b, x in inputs.items():
        calls = [lambda x=x: unet(x) for _ in range(max(frames // b, 1))]
        out[f"renderer_batch{b}"] = with_flops(timed_calls(calls, b, rounds), unet_flops, peak)
    faces = FaceRenderer(ParametricFaceModel(str(bfm), convention="audiodvp"), size)
    reenact = Reenactment(model, faces).eval()
    rows = 2 * WINDOW - 1
    # one feature row per 25 fps frame; output frame k hears rows k .. k + 12 (its window's 7 frames' 7 rows each)
    sequence = torch.randn(1, model.audio_width, frames + rows, generator=generator)
    audio = [sequence[..., k:k + rows] for k in range(frames)]
    valid = torch.ones(1, WINDOW, dtype=torch.bool)

    def new_expression(k: int) -> torch.Tensor:  # steady state: one new window frame per output frame
        window = audio[k][..., WINDOW - 1:].transpose(1, 2)
        return model.audio2expression(model.encode_audio(window, valid))

    expression_flops = gflop(lambda: new_expression(0))
    calls = [lambda k=k: new_expression(k) for k in range(frames)]
    out["atnet_a2e"] = with_flops(timed_calls(calls, 1, rounds), expression_flops, peak)
    out["atnet_a2e"]["calls_per_frame"] = {"atnet": WINDOW, "audio2expression": 1}
    if model.encoder_kind == "atnet":
        out["atnet_a2e"]["gflop_per_frame_atnet"] = round(gflop(lambda: model.audio_encoder(
            audio[0][..., :WINDOW].transpose(1, 2).reshape(WINDOW, 1, 28, 12))), 3)
    width = 256 if model.encoder_kind == "atnet" else model.audio_width  # AT-net's features, or the feature's values
    features = torch.randn(1, WINDOW, width, generator=generator)
    out["atnet_a2e"]["gflop_per_frame_audio2expression"] = round(gflop(lambda: model.audio2expression(features)), 4)
    table = np.asarray(coeffs, np.float32)
    targets = [torch.from_numpy(np.concatenate([table[np.clip(np.arange(k - 3, k + 4), 0, len(table) - 1)],
                                                np.ones((WINDOW, 1), np.float32)], 1))[None] for k in range(frames)]
    warm = Reenactment(model, faces).eval()
    warm(targets[0], audio[0])  # its renders kept: the next frame's call makes one, as in a dub's steady state
    generator_flops = gflop(lambda: warm(targets[1], audio[1]))
    calls = [lambda t=t, a=audio[k]: reenact(t, a) for k, t in enumerate(targets)]
    out["generator_batch1"] = with_flops(timed_calls(calls, 1, rounds), generator_flops, peak)
    out["generator_batch1"]["what"] = ("Reenactment on consecutive output frames: AT-net + A2E and the lower-face "
                                       "render of the window's new frame (1,000-vertex stand-in; the other six kept), "
                                       "the renderer network")
    out["parameters"] = {name: sum(p.numel() for p in getattr(model, name).parameters())
                         for name in ("renderer", "audio_encoder", "audio2expression", "discriminator")}
    return out


# ---- the run ------------------------------------------------------------------------------------------------------
def run(args, work: Path, loads: list[float]) -> dict:
    import talkingface

    peak = [matmul_peak_gflops()]
    print(json.dumps({"matmul_peak_gflops": round(peak[0], 1)}), flush=True)
    base = head_frame()
    video = head_video(work / f"e2e{args.e2e_seconds:g}.mp4", args.e2e_seconds, base)
    small = standin(work, SMALL_VERTICES)
    fit_overrides = {"face3d": {"fit": SHORT_FIT}} if args.quick else {}
    model = build_model(small, fit_overrides)
    landmarks, valid, seconds = track(video, model.config)
    tracking = {"frames": len(landmarks), "seconds": round(seconds, 2),
                "frames_per_s": round(len(landmarks) / seconds, 2), "valid": int(valid.sum())}
    print(json.dumps({"tracking": tracking}), flush=True)
    fit_frames = min(args.fit_frames, len(landmarks))
    stand_ins = [("standin_1000", small), (f"standin_{args.large_vertices}", None)]
    fitting, rendering, coeffs_small = {}, {}, None
    for name, folder in stand_ins:
        if folder is None:
            start = time.perf_counter()
            folder = standin(work, args.large_vertices)
            written = round(time.perf_counter() - start, 1)
        else:
            written = None
        row, coeffs = fit_stage(video, landmarks, valid, folder, model.config, fit_frames)
        if written is not None:
            row["standin_written_seconds"] = written
        fitting[name] = row
        print(json.dumps({"fit": name, **row}), flush=True)
        rendering[name] = render_stage(folder, coeffs, args.frames, args.rounds)
        print(json.dumps({"renders": name, **rendering[name]}), flush=True)
        if coeffs_small is None:
            coeffs_small = coeffs
        else:
            shutil.rmtree(folder, ignore_errors=True)
        gc.collect()
    peak.append(matmul_peak_gflops())
    networks = network_stage(model, small, coeffs_small, args.unet_frames, args.batch, args.rounds, max(peak))
    print(json.dumps({"networks": networks}), flush=True)
    del model
    gc.collect()
    peak.append(matmul_peak_gflops())
    e2e_config = merge({"face3d": {"bfm_folder": str(small)}, "audiodvp": RELEASED}, fit_overrides)
    e2e = {"first_dub": dub_run("audiodvp", work, video, e2e_config, THREADS, flop_frames=args.flop_frames),
           "second_dub": dub_run("audiodvp", work, video, e2e_config, THREADS, warm_dubs=1)}
    e2e["configuration"] = ("the defaults (audio_encoder atnet, random weights, renderer 8 downs / ngf 64, "
                            "image_size 256, infer_batch 1 on CPU), face3d.bfm_folder the 1,000-vertex stand-in, "
                            + ("a short fit schedule (--quick)" if args.quick else "the default fit schedule")
                            + "; the second dub follows an untimed one of the same video (the target's fit kept)")
    print(json.dumps({"end_to_end": e2e}), flush=True)
    videos = {seconds: head_video(work / f"rss{seconds:g}.mp4", seconds, base) for seconds in args.rss}
    memory = memory_series("audiodvp", work, videos, merge(CHEAP, {"face3d": {"bfm_folder": str(small)}}), THREADS)
    print(json.dumps({"peak_rss": memory}), flush=True)
    peak.append(matmul_peak_gflops())
    best_peak = max(peak)
    # the shares against the run's best peak (stages measured before a later, higher peak are rescaled)
    for row in networks.values():
        if isinstance(row, dict) and "gflop_per_s" in row:
            row["share_of_matmul_peak"] = round(row["gflop_per_s"] / best_peak, 4)
    return {
        "benchmark": "audiodvp_dubbing",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__, "threads": THREADS, "numpy": np.__version__,
        "talkingface": getattr(talkingface, "__version__", "unknown"),
        "quick": bool(args.quick), "arguments": {k: v for k, v in vars(args).items() if k != "child"},
        "load_1min_before": [round(v, 2) for v in loads], "load_1min_at_end": round(os.getloadavg()[0], 2),
        "matmul_peak_gflops": [round(p, 1) for p in peak], "matmul_peak_gflops_best": round(best_peak, 1),
        "input": {"frame": [1280, 720], "fps": FPS, "seconds": args.e2e_seconds,
                  "portrait_box_left_top_size": fitting["standin_1000"]["portrait_box_left_top_size"],
                  "video": "synthetic: skimage astronaut x2.5, rows 0:720, swaying 3 px, 220 Hz tone (its own audio)"},
        "tracking": tracking,
        "fit": fitting,
        "fit_settings": "configs/overall.yaml face3d.fit" + (" with SHORT_FIT (--quick)" if args.quick else
                                                               " (the defaults: 12 key frames x (600 landmark + 100 "
                                                               "photometric steps), then per batch of 16: 400 "
                                                               "landmark + 30 photometric steps)"),
        "renders": rendering,
        "networks": networks,
        "end_to_end": e2e,
        "peak_rss": {"configuration": CHEAP, **memory},
        "notes": NOTES,
    }


NOTES = ("random weights in the released layouts; torch on 2 threads; frames_per_s: frames / seconds of the timed "
         "calls after one warm-up call, best of --rounds rounds; GFLOP from torch.utils.flop_counter (convolutions "
         "and matrix products); share_of_matmul_peak: GFLOP/s / the best fp32 4096^3 matmul rate measured in the "
         "run (trainer_overhead.matmul_peak_gflops). The fit and the renders have no FLOP ratio: rasterizing, the "
         "z-buffer's scatter_reduce, the barycentric gathers and the per-vertex normals are memory-bound scatter/"
         "gather work (docs/face3d.md). End to end and peak RSS: talkingface benchmark's own measuring "
         "(benchmarks/dub_runs.py: generate in a child process, the stages the loop and AudioDVP's hooks mark, "
         "exclusive seconds, peak RSS per stage from VmHWM, FLOPs of the first 8 frames in a second dub); "
         "other_busy_cores / other_cpu_cores: cores busy with other processes during the timing (/proc/stat "
         "less this process and its children); a stage with more than ~0.2 was disturbed; growth: the peak's "
         "increase per minute of video between the shortest and the longest run, in all and per stage "
         "(AudioDVPDubbing keeps the blend weights of the 64 most recent source frames and 32 renders: bounded).")


def run_and_write(run: Callable[[Any, Path, list[float]], dict], args, prefix: str) -> None:
    """After the load has fallen (``wait_for_quiet``): ``run(args, work, loads)`` in a temporary folder (removed
    after), its wall time added, the result printed and, unless ``args.output`` is None, written atomically there."""
    torch.set_num_threads(THREADS)
    loads = wait_for_quiet(args.wait_load, args.wait_minutes, 60)
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        result = run(args, work, loads)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["wall_seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps(result, indent=2))
    if args.output is None:
        return
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output, result)
    print(f"wrote {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, a short fit, nothing quotable")
    parser.add_argument("--fit-frames", type=int, default=50, help="frames fitted with each stand-in")
    parser.add_argument("--large-vertices", type=int, default=BFM_VERTICES, help="the BFM-sized stand-in")
    parser.add_argument("--frames", type=int, default=8, help="output frames per render timing")
    parser.add_argument("--unet-frames", type=int, default=4, help="frames per network timing")
    parser.add_argument("--batch", type=int, default=4, help="the renderer network's batch besides 1")
    parser.add_argument("--rounds", type=int, default=2, help="stage timings: best of this many rounds")
    parser.add_argument("--e2e-seconds", type=float, default=4.0, help="the end-to-end clip's length")
    parser.add_argument("--rss", type=float, nargs="*", default=[10.0, 60.0], help="video lengths of the memory runs")
    parser.add_argument("--flop-frames", type=int, default=8, help="frames of the end-to-end FLOP count (0: none)")
    parser.add_argument("--wait-load", type=float, default=0.7, help="wait for the 1-min load to fall below this")
    parser.add_argument("--wait-minutes", type=int, default=10, help="... for at most this many minutes")
    parser.add_argument("--output", default=None, help=f"default {OUTPUT} (--quick: nothing written)")
    args = parser.parse_args()
    if args.quick:
        args.fit_frames, args.large_vertices, args.frames, args.unet_frames, args.batch = 8, 4000, 2, 2, 2
        args.rounds, args.e2e_seconds, args.rss = 1, 1.0, [1.0, 2.0]
    elif args.output is None:
        args.output = str(OUTPUT)
    run_and_write(run, args, "audiodvp_dubbing_")


if __name__ == "__main__":
    main()
