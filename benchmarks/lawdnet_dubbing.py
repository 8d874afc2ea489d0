"""LawDNet dubbing throughput on this machine: the generator alone at mouth 288 (ours vs the official per-frame
loop), ``generate`` end to end, and ``talkingface serve``'s latency for one posted audio. Writes
benchmarks/results/lawdnet_dubbing.json.

Random weights in the official layout (timing only). "Official loop": the generator called once per frame
(batch 1, default memory format) computing both warp layers, as the release's modules do; "ours": as
``generate`` runs it (the dead warp layer skipped, ``lawdnet.channels_last``), per frame and batched.
Audio feature: mfcc (52 wide; the audio encoder is < 0.1 % of the FLOPs), so no DeepSpeech2 weights are needed.
FLOPs: ``torch.utils.flop_counter`` (convolutions and matrix products; the warp's elementwise grid and
``grid_sample`` are not counted, so the share of the limit is an upper bound on the useful work).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dinet_dubbing import child_run, gflop_per_frame, looped_demo_video, model_only  # noqa: E402
from process_memory import peak_rss_mb  # noqa: E402
from trainer_overhead import matmul_peak_gflops  # noqa: E402
from talkingface.io_utils import atomic_write_json  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "results" / "lawdnet_dubbing.json"
THREADS = 2


def options(mouth: int, **extra) -> dict:
    return {"lawdnet": {"mouth_region_size": mouth, "audio_feature": "mfcc", "sync_audio_feature": "mfcc", **extra},
            "progress": False}


def build(mouth: int, **extra):
    import talkingface

    torch.manual_seed(0)
    return talkingface.build_model("lawdnet", options(mouth, **extra)).eval()


def model_rows(mouth: int, batch: int, frames: int, rounds: int) -> dict:
    """Best frames/s of each way over interleaved rounds (a shared CPU's speed drifts)."""
    ours = build(mouth)
    official = build(mouth, skip_dead_layers=False)
    official.load_state_dict(ours.state_dict())
    ways = {"official_loop": (official, 1, False), "ours_per_frame": (ours, 1, True),
            "ours_per_frame_contiguous": (ours, 1, False), "ours_batched": (ours, batch, True)}
    best = dict.fromkeys(ways, 0.0)
    for _ in range(rounds):
        for name, (model, size, channels_last) in ways.items():
            best[name] = max(best[name], model_only(model, size, frames, channels_last))
    return {"mouth": mouth, "face": list(ours.networks.image_size), "gflop_per_frame": round(gflop_per_frame(ours), 2),
            "gflop_per_frame_official": round(gflop_per_frame(official), 2), "batch": batch,
            **{f"{name}_frames_per_s": round(fps, 4) for name, fps in best.items()}}


def end_to_end(spec: dict) -> dict:
    """Child process: ``generate`` on a video, then the generator alone in the same process."""
    torch.set_num_threads(THREADS)
    model = build(spec["mouth"])
    start = time.perf_counter()
    out = model.generate(Path(spec["video"]), Path(spec["video"]), Path(spec["out"]), progress=False)
    seconds = time.perf_counter() - start
    from talkingface.media import probe_video

    frames = probe_video(out).frame_count
    model_fps = model_only(model, 1, spec["model_only_frames"], bool(model.options["channels_last"]))
    return {"mouth": spec["mouth"], "video_seconds": spec["seconds"], "frames": frames, "seconds": round(seconds, 2),
            "frames_per_s": round(frames / seconds, 4), "model_only_frames_per_s": round(model_fps, 4),
            "end_to_end_over_model_time": round(model_fps / (frames / seconds), 3), "peak_rss_mb": peak_rss_mb()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_latency(mouth: int, template: Path, audio_seconds: float, requests_count: int, work: Path) -> dict:
    """Start ``talkingface serve`` on ``template``, post ``audio_seconds`` of the demo speech ``requests_count``
    times one after the other; start-up and per-request seconds."""
    import requests

    from talkingface.media import read_audio, write_wav

    checkpoint = build(mouth).save_weights(work / f"lawdnet{mouth}.pth")
    wav = work / "speech.wav"
    speech = read_audio(looped_demo_video(work / f"speech{audio_seconds:g}.mp4", audio_seconds))
    write_wav(wav, speech)
    port = free_port()
    settings = [f"--lawdnet.{key}={json.dumps(value)}" for key, value in options(mouth)["lawdnet"].items()]
    command = [sys.executable, "-m", "talkingface.cli", "serve", "--model", "lawdnet", "--checkpoint", str(checkpoint),
               "--video", str(template), "--port", str(port), *settings, "--progress=false"]
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                if process.poll() is not None:
                    raise RuntimeError(process.stdout.read()[-2000:])
                time.sleep(0.5)
        startup = time.perf_counter() - start
        latencies = []
        for _ in range(requests_count):
            begin = time.perf_counter()
            with open(wav, "rb") as handle:
                reply = requests.post(f"{url}/dub", files={"audio": ("speech.wav", handle, "audio/wav")}, timeout=3600)
            reply.raise_for_status()
            latencies.append(round(time.perf_counter() - begin, 2))
    finally:
        process.terminate()
        process.wait(timeout=60)
    frames = int(round(audio_seconds * 25))
    return {"mouth": mouth, "template_seconds": None, "audio_seconds": audio_seconds, "startup_seconds": round(startup, 2),
            "latency_seconds": latencies, "frames": frames,
            "frames_per_s": round(frames / min(latencies), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mouth", type=int, default=288)
    parser.add_argument("--frames", type=int, default=4, help="frames timed per model-only measurement")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--e2e-seconds", type=float, default=4.0, help="video length of the end-to-end run")
    parser.add_argument("--serve-mouth", type=int, default=288)
    parser.add_argument("--serve-audio-seconds", type=float, default=10.0)
    parser.add_argument("--serve-requests", type=int, default=1)
    parser.add_argument("--output", default=str(OUTPUT))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(end_to_end(json.loads(args.child))))
        return
    torch.set_num_threads(THREADS)
    peak = [matmul_peak_gflops()]
    model = model_rows(args.mouth, args.batch, args.frames, args.rounds)
    print(json.dumps(model), flush=True)
    peak.append(matmul_peak_gflops())
    work = Path(tempfile.mkdtemp(prefix="lawdnet_dubbing_"))
    video = looped_demo_video(work / f"v{args.e2e_seconds:g}.mp4", args.e2e_seconds)
    e2e = child_run({"mouth": args.mouth, "video": str(video), "seconds": args.e2e_seconds,
                     "out": str(work / "out.mp4"), "model_only_frames": args.frames}, __file__)
    print(json.dumps(e2e), flush=True)
    serve = None
    if args.serve_requests:
        serve = server_latency(args.serve_mouth, video, args.serve_audio_seconds, args.serve_requests, work)
        serve["template_seconds"] = args.e2e_seconds
        print(json.dumps(serve), flush=True)
    peak.append(matmul_peak_gflops())
    best = max(peak)
    model["limit_frames_per_s"] = round(best / model["gflop_per_frame"], 4)
    for name in ("official_loop", "ours_per_frame", "ours_per_frame_contiguous", "ours_batched"):
        model[f"{name}_fraction_of_limit"] = round(model[f"{name}_frames_per_s"] / model["limit_frames_per_s"], 3)
    result = {"benchmark": "lawdnet_dubbing", "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
              f"{THREADS} torch threads, torch {torch.__version__}", "matmul_peak_gflops": [round(p, 1) for p in peak],
              "load_1min_at_end": os.getloadavg()[0], "model_only": model, "end_to_end": e2e, "serve": serve,
              "notes": "random weights in the official layout; official loop = the generator per frame (batch 1, "
                       "default memory format, both warp layers computed); ours = as generate runs it (dead layer "
                       "skipped, channels_last unless named contiguous); limit = best matmul peak of the run / GFLOP "
                       "per frame of ours; end to end = LawDNet.generate (landmark pass, aligned crops, generator, "
                       "inverse-warp paste, H.264 + audio); serve = POST /dub of the speech, sequential requests"}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.output), result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
