"""DINet dubbing throughput on this machine: model-only (batched) vs the official per-frame loop, end to end,
and peak memory against video length. Writes benchmarks/results/dinet_dubbing.json.

Random weights in the official layout (timing only). The official inference calls the generator once per
frame (batch 1); "official loop" below is that loop on the same networks (numerically the official
modules, see docs/dinet_networks.md). Audio feature: mfcc (52 wide) instead of DeepSpeech's 29 (the audio
encoder is < 0.1 % of the FLOPs), so no DeepSpeech weights are needed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_overhead import matmul_peak_gflops  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "results" / "dinet_dubbing.json"
THREADS = 2


def build(mouth: int):
    import talkingface

    torch.manual_seed(0)
    return talkingface.build_model("dinet", {"dinet": {"mouth_region_size": mouth, "audio_feature": "mfcc"},
                                             "progress": False}).eval()


def generator_inputs(model, batch: int) -> tuple[torch.Tensor, ...]:
    height, width = model.networks.image_size
    channels = model.networks.audio_channel
    return (torch.rand(batch, 3, height, width), torch.rand(batch, 15, height, width), torch.randn(batch, channels, 5))


def gflop_per_frame(model) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.generator(*generator_inputs(model, 1))
    return counter.get_total_flops() / 1e9


def model_only(model, batch: int, frames: int) -> float:
    """Frames per second of the generator alone, ``batch`` frames per call, ``frames`` frames timed."""
    inputs = generator_inputs(model, batch)
    with torch.no_grad():
        model.generator(*inputs)  # warm-up
        start = time.perf_counter()
        for _ in range(max(frames // batch, 1)):
            model.generator(*inputs)
    return max(frames // batch, 1) * batch / (time.perf_counter() - start)


def looped_demo_video(path: Path, seconds: float) -> Path:
    """A demo clip (real face, real speech) looped to ``seconds``."""
    from talkingface.data.demo import write_demo_clip
    from talkingface.media import VideoWriter, read_audio, read_frames

    clip = write_demo_clip(path.parent / "demo_src", 0)
    frames, audio = read_frames(clip), read_audio(clip)
    count = int(seconds * 25)
    reps = -(-count // len(frames))
    frames = np.concatenate([frames] * reps)[:count]
    audio = np.concatenate([audio] * reps)[:count * 640]
    with VideoWriter(path, 25, audio=audio, preset="ultrafast") as writer:
        for frame in frames:
            writer.write(frame)
    return path


def end_to_end(spec: dict) -> dict:
    """Child process: ``generate`` on a video; frames/s and peak RSS."""
    torch.set_num_threads(THREADS)
    model = build(spec["mouth"])
    video = Path(spec["video"])
    start = time.perf_counter()
    out = model.generate(video, video, Path(spec["out"]), progress=False)
    seconds = time.perf_counter() - start
    from talkingface.media import probe_video

    frames = probe_video(out).frame_count
    return {"mouth": spec["mouth"], "video_seconds": spec["seconds"], "frames": frames, "seconds": round(seconds, 2),
            "frames_per_s": round(frames / seconds, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def child_run(spec: dict) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mouths", type=int, nargs="*", default=[64, 128, 256])
    parser.add_argument("--e2e", nargs="*", default=["64:10", "128:4"], help="mouth:seconds end-to-end runs")
    parser.add_argument("--rss", type=float, nargs="*", default=[5.0, 20.0], help="video lengths at mouth 64")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--output", default=str(OUTPUT))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(end_to_end(json.loads(args.child))))
        return
    torch.set_num_threads(THREADS)
    peak = [matmul_peak_gflops()]
    model_rows = []
    for mouth in args.mouths:
        model = build(mouth)
        flops = gflop_per_frame(model)
        timed = 8 if mouth <= 128 else 4
        ours = model_only(model, min(args.batch, timed), timed)
        official = model_only(model, 1, timed)
        model_rows.append({"mouth": mouth, "face": list(model.networks.image_size), "gflop_per_frame": round(flops, 2),
                           "batched_frames_per_s": round(ours, 3), "official_loop_frames_per_s": round(official, 3),
                           "batched_gflops": round(ours * flops, 1), "official_loop_gflops": round(official * flops, 1),
                           "limit_frames_per_s": None})
        print(json.dumps(model_rows[-1]), flush=True)
    work = Path(tempfile.mkdtemp(prefix="dinet_dubbing_"))
    e2e = []
    for item in args.e2e:
        mouth, seconds = int(item.split(":")[0]), float(item.split(":")[1])
        video = looped_demo_video(work / f"v{seconds:g}.mp4", seconds)
        row = child_run({"mouth": mouth, "video": str(video), "seconds": seconds, "out": str(work / f"o{mouth}.mp4")})
        # generate() runs one frame per generator call on CPU (faster there than batches), so its model-only
        # reference is the per-frame loop
        model_fps = next(r["official_loop_frames_per_s"] for r in model_rows if r["mouth"] == mouth)
        row["model_only_frames_per_s"] = model_fps
        row["end_to_end_over_model_time"] = round(model_fps / row["frames_per_s"], 2)
        e2e.append(row)
        print(json.dumps(row), flush=True)
    rss = []
    for seconds in args.rss:
        video = looped_demo_video(work / f"r{seconds:g}.mp4", seconds)
        row = child_run({"mouth": 64, "video": str(video), "seconds": seconds, "out": str(work / "r.mp4")})
        rss.append({k: row[k] for k in ("video_seconds", "frames", "peak_rss_mb", "frames_per_s")})
        print(json.dumps(rss[-1]), flush=True)
    peak.append(matmul_peak_gflops())
    best = max(peak)
    for row in model_rows:
        row["limit_frames_per_s"] = round(best / row["gflop_per_frame"], 3)
        row["batched_fraction_of_limit"] = round(row["batched_frames_per_s"] / row["limit_frames_per_s"], 3)
        row["official_loop_fraction_of_limit"] = round(row["official_loop_frames_per_s"] / row["limit_frames_per_s"], 3)
    result = {"benchmark": "dinet_dubbing", "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
              f"{THREADS} torch threads, torch {torch.__version__}", "matmul_peak_gflops": [round(p, 1) for p in peak],
              "load_1min_at_end": os.getloadavg()[0], "model_only": model_rows, "end_to_end": e2e,
              "peak_rss_vs_length_mouth64": rss,
              "notes": "random weights in the official layout; official loop = the generator called per frame "
                       "(batch 1) as the official inference.py does; end to end = DINet.generate (landmark pass, "
                       "crops, generator, feathered paste, H.264 + audio)"}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
