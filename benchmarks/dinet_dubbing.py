"""DINet dubbing throughput on this machine: model-only (ours: as ``generate`` runs the generator, per frame
and batched) vs the official per-frame loop, end to end, and peak memory against video length. Writes
benchmarks/results/dinet_dubbing.json.

Random weights in the official layout (timing only). The official inference calls the generator once per
frame (batch 1, default memory format); "official loop" below is that loop on the same networks
(numerically the official modules, see docs/dinet_networks.md); "ours" runs them the way ``generate`` does
(``dinet.channels_last``). Audio feature: mfcc (52 wide) instead of DeepSpeech's 29 (the audio
encoder is < 0.1 % of the FLOPs), so no DeepSpeech weights are needed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_memory import peak_rss_mb  # noqa: E402
from trainer_overhead import matmul_peak_gflops  # noqa: E402
from talkingface.io_utils import atomic_write_json  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "results" / "dinet_dubbing.json"
THREADS = 2


def build(mouth: int, **dinet):
    import talkingface

    torch.manual_seed(0)
    return talkingface.build_model("dinet", {"dinet": {"mouth_region_size": mouth, "audio_feature": "mfcc", **dinet},
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


def model_only(model, batch: int, frames: int, channels_last: bool) -> float:
    """Frames per second of the generator alone, ``batch`` frames per call, ``frames`` frames timed."""
    from talkingface.dubbing import inference_mode

    layout = torch.channels_last if channels_last else torch.contiguous_format
    masked, refs, audio = generator_inputs(model, batch)
    masked, refs = masked.contiguous(memory_format=layout), refs.contiguous(memory_format=layout)
    calls = max(frames // batch, 1)
    with torch.no_grad(), inference_mode(model.networks.generator, channels_last) as generator:
        generator(masked, refs, audio)  # warm-up
        start = time.perf_counter()
        for _ in range(calls):
            generator(masked, refs, audio)
    return calls * batch / (time.perf_counter() - start)


def best_of_rounds(model, batch: int, frames: int, rounds: int) -> dict[str, float]:
    """Best frames/s of each way of running the generator over ``rounds`` interleaved rounds (noisy shared CPUs)."""
    ways = {"official_loop": (1, False), "ours_per_frame": (1, True), "ours_batched": (batch, True)}
    best = dict.fromkeys(ways, 0.0)
    for _ in range(rounds):
        for name, (size, channels_last) in ways.items():
            best[name] = max(best[name], model_only(model, size, frames, channels_last))
    return best


def looped_demo_video(path: Path, seconds: float) -> Path:
    """A demo clip (real face, real speech) looped to ``seconds``, written frame by frame (one clip in memory);
    an existing ``path`` is reused."""
    if path.exists():
        return path
    from talkingface.data.demo import write_demo_clip
    from talkingface.media import VideoWriter, read_audio, read_frames

    clip = write_demo_clip(path.parent / "demo_src", 0)
    frames, audio = read_frames(clip), read_audio(clip)
    count = int(seconds * 25)
    reps = -(-count // len(frames))
    audio = np.tile(audio, reps)[:count * 640]
    with VideoWriter(path, 25, audio=audio, preset="ultrafast") as writer:
        for index in range(count):
            writer.write(frames[index % len(frames)])
    return path


class IdentityGenerator(torch.nn.Module):
    """Returns the masked face: ``generate`` without the generator's compute (for quick memory series)."""

    def forward(self, masked: torch.Tensor, refs: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return masked


def end_to_end(spec: dict) -> dict:
    """Child process: ``generate`` on a video; frames/s, peak RSS, and (``model_only_frames``) the generator
    alone timed right after in the same process, the fairest model-only reference on a CPU whose speed drifts."""
    torch.set_num_threads(THREADS)
    model = build(spec["mouth"], overlap_io=spec.get("overlap_io"))
    if spec.get("identity_generator"):  # memory series in minutes: everything but the generator's compute
        model.networks.generator = IdentityGenerator()
    video = Path(spec["video"])
    start = time.perf_counter()
    out = model.generate(video, video, Path(spec["out"]), progress=False)
    seconds = time.perf_counter() - start
    from talkingface.media import probe_video

    frames = probe_video(out).frame_count
    row = {"mouth": spec["mouth"], "video_seconds": spec["seconds"], "frames": frames, "seconds": round(seconds, 2),
           "frames_per_s": round(frames / seconds, 3), "peak_rss_mb": peak_rss_mb()}
    if spec.get("model_only_frames"):
        model_fps = model_only(model, 1, spec["model_only_frames"], bool(model.options["channels_last"]))
        row["model_only_frames_per_s"] = round(model_fps, 3)
        row["end_to_end_over_model_time"] = round(model_fps / row["frames_per_s"], 3)
    return row


def child_run(spec: dict, script: str = __file__) -> dict:
    """Run ``script --child <spec>`` (a benchmark's own end-to-end child) and return the JSON it prints last."""
    result = subprocess.run([sys.executable, script, "--child", json.dumps(spec)], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mouths", type=int, nargs="*", default=[64, 128, 256])
    parser.add_argument("--e2e", nargs="*", default=["64:10", "64:10:overlap", "128:4"],
                        help="mouth:seconds[:overlap] end-to-end runs (overlap: dinet.overlap_io on)")
    parser.add_argument("--rss", type=float, nargs="*", default=[10.0, 60.0, 300.0], help="video lengths at mouth 64")
    parser.add_argument("--rss-identity", type=float, nargs="*", default=[],
                        help="video lengths for a quick memory series with the generator replaced by an identity")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="model-only timings: best of this many rounds")
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
        peak.append(matmul_peak_gflops())
        speeds = best_of_rounds(model, min(args.batch, timed), timed, args.rounds)
        row = {"mouth": mouth, "face": list(model.networks.image_size), "gflop_per_frame": round(flops, 2),
               "batch": min(args.batch, timed)}
        for name, fps in speeds.items():
            row[f"{name}_frames_per_s"] = round(fps, 3)
            row[f"{name}_gflops"] = round(fps * flops, 1)
        model_rows.append(row)
        print(json.dumps(row), flush=True)
    work = Path(tempfile.mkdtemp(prefix="dinet_dubbing_"))
    e2e = []
    for item in args.e2e:
        mouth, seconds, *flags = item.split(":")
        mouth, seconds, overlap = int(mouth), float(seconds), "overlap" in flags
        video = looped_demo_video(work / f"v{seconds:g}.mp4", seconds)
        row = child_run({"mouth": mouth, "video": str(video), "seconds": seconds, "out": str(work / f"o{mouth}.mp4"),
                         "overlap_io": True if overlap else None, "model_only_frames": 24 if mouth <= 64 else 8})
        row["overlap_io"] = overlap
        e2e.append(row)
        print(json.dumps(row), flush=True)
    rss, rss_identity = [], []
    series = [(s, False, rss) for s in args.rss] + [(s, True, rss_identity) for s in args.rss_identity]
    for seconds, identity, rows in series:
        video = looped_demo_video(work / f"r{seconds:g}.mp4", seconds)
        row = child_run({"mouth": 64, "video": str(video), "seconds": seconds, "out": str(work / "r.mp4"),
                         "identity_generator": identity})
        rows.append({k: row[k] for k in ("video_seconds", "frames", "peak_rss_mb", "frames_per_s")})
        print(json.dumps(rows[-1]), flush=True)
    peak.append(matmul_peak_gflops())
    best = max(peak)
    for row in model_rows:
        row["limit_frames_per_s"] = round(best / row["gflop_per_frame"], 3)
        for name in ("official_loop", "ours_per_frame", "ours_batched"):
            row[f"{name}_fraction_of_limit"] = round(row[f"{name}_frames_per_s"] / row["limit_frames_per_s"], 3)
    result = {"benchmark": "dinet_dubbing", "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
              f"{THREADS} torch threads, torch {torch.__version__}", "matmul_peak_gflops": [round(p, 1) for p in peak],
              "load_1min_at_end": os.getloadavg()[0], "model_only": model_rows, "end_to_end": e2e,
              "peak_rss_vs_length_mouth64": rss, "peak_rss_vs_length_identity_generator": rss_identity,
              "notes": "random weights in the official layout; official loop = the generator called per frame "
                       "(batch 1, default memory format) as the official inference.py does; ours = as generate runs "
                       "it (channels_last), per frame and batched; limit = best matmul peak of the run / GFLOP per "
                       "frame; end to end = DINet.generate (landmark pass, crops, generator, feathered paste, "
                       "H.264 + audio); peak RSS = the child's VmHWM"}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.output), result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
