"""Evaluation speed: videos scored per minute for LSE (``lrs`` and ``face`` protocols) and FID on CPU,
against the reference implementations run on the same machine with the same (random) weights.

The reference code is not in this repository: fetch Rudrabha/Wav2Lip and joonson/syncnet_python, make
the reference venv, and pass their paths (see docs/benchmarks_evaluation.md). Every measurement runs in
a fresh child process (ours: this script with ``--child``; reference: the drivers in
``benchmarks/reference_runners/`` under the reference venv), so its peak RSS is its own. FLOPs are
counted with ``torch.utils.flop_counter`` on one SyncNet window, one S3FD frame and one Inception image,
and the fp32 matmul peak is measured in the same run. Writes benchmarks/results/evaluation_speed.json.

    python benchmarks/evaluation_speed.py --wav2lip /tmp/ref/Wav2Lip --syncnet-python /tmp/ref/syncnet_python \
        [--ref-python /tmp/refvenv/bin/python] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_memory import peak_rss_mb  # noqa: E402
from trainer_overhead import matmul_peak_gflops  # noqa: E402  (one definition for every benchmark)
from talkingface.io_utils import atomic_write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "benchmarks" / "results" / "evaluation_speed.json"
RUNNERS = ROOT / "benchmarks" / "reference_runners"
FPS, SAMPLE_RATE = 25, 16000
FACE_SIDE_720P = 360  # face square in the 720p video; the forced track box follows it
THREADS = 2


# ---------------------------------------------------------------- inputs: weights and videos

def write_weights(folder: Path) -> dict[str, str]:
    """Random weights in the release layouts: syncnet_v2.model, sfd_face.pth, FID Inception.

    S3FD's face-class biases are set to -20 so that no prior scores above the pipeline's 0.05/0.9
    thresholds: both detectors then do the full network pass and no box work (random weights would
    otherwise give thousands of random boxes whose Python-level handling would dominate the reference).
    """
    import torch

    from talkingface.evaluation.fid import FIDInceptionV3
    from talkingface.evaluation.syncnet import SyncNet
    from talkingface.face.s3fd import S3FD

    paths = {"syncnet": folder / "syncnet_v2.model", "s3fd": folder / "sfd_face.pth",
             "inception": folder / "pt_inception_random.pth"}
    torch.manual_seed(0)
    net = SyncNet()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as tests/helpers.py random_syncnet
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    torch.save(net.state_dict(), paths["syncnet"])
    s3fd = S3FD()
    with torch.no_grad():
        for head in s3fd.conf:
            head.bias.zero_()
            head.bias[-1] = -20.0  # the face logit (channel 3 of the first head, 1 of the others)
    torch.save(s3fd.state_dict(), paths["s3fd"])
    torch.save(FIDInceptionV3().state_dict(), paths["inception"])
    return {k: str(v) for k, v in paths.items()}


def write_video(path: Path, width: int, height: int, seconds: float, face_side: int) -> list[float]:
    """A moving face (scikit-image's astronaut) on a gradient, 25 fps H.264 + 16 kHz speech-like audio.

    Returns the mean face box ``[x1, y1, x2, y2]`` (the forced track of the face protocol)."""
    import numpy as np
    from skimage.data import astronaut
    from skimage.transform import resize

    from talkingface.media import VideoWriter

    face = (resize(astronaut()[0:300, 80:380], (face_side, face_side), anti_aliasing=True) * 255).astype(np.uint8)
    background = np.linspace(40, 120, width, dtype=np.uint8)[None, :, None].repeat(height, 0).repeat(3, 2)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    x0, y0 = (width - face_side) // 2, (height - face_side) // 2
    amplitude = max(2, (min(width - face_side, height - face_side) // 2) // 4)
    with VideoWriter(path, FPS, audio=audio, preset="veryfast", crf=20) as writer:
        for i in range(int(seconds * FPS)):
            frame = background.copy()
            x = x0 + int(amplitude * np.sin(i / 15))
            y = y0 + int(amplitude / 2 * np.cos(i / 20))
            frame[y:y + face_side, x:x + face_side] = face
            writer.write(frame)
    return [float(x0), float(y0), float(x0 + face_side), float(y0 + face_side)]


# ---------------------------------------------------------------- FLOPs and the matmul peak

def count_flops(weights: dict[str, str]) -> dict[str, float]:
    """GFLOP of one SyncNet window (lip 5x224x224 + audio 13x20), one S3FD 720p frame at scale 0.25
    (180x320 input) and one FID Inception image (299x299), counted with FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from talkingface.evaluation.fid import FIDInceptionV3
    from talkingface.evaluation.syncnet import SyncNet
    from talkingface.face.s3fd import S3FD

    def gflop(fn) -> float:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops() / 1e9

    syncnet = SyncNet().eval()
    return {
        "syncnet_lip_per_window": gflop(lambda: syncnet.forward_lip(torch.zeros(1, 3, 5, 224, 224))),
        "syncnet_audio_per_window": gflop(lambda: syncnet.forward_aud(torch.zeros(1, 1, 13, 20))),
        "s3fd_per_720p_frame_at_0.25": gflop(lambda: S3FD().eval()(torch.zeros(1, 3, 180, 320))),
        "inception_per_image": gflop(lambda: FIDInceptionV3().eval()(torch.zeros(1, 3, 299, 299))),
    }


# ---------------------------------------------------------------- our side (child processes)

def time_face_protocol(video: str, detector, scorer, repeats: int, times: list, loads: list, scored) -> tuple:
    """Time the face protocol's two passes ``repeats`` times; ``scored(found_tracks)`` picks the tracks pass 2
    scores. Appends each total to ``times`` and the load before it to ``loads``."""
    from talkingface.evaluation.syncnet.face_protocol import find_tracks, score_tracks
    from talkingface.evaluation.syncnet.face_tracks import TrackingOptions

    options = TrackingOptions()
    pass1, pass2 = [], []
    for _ in range(repeats):
        loads.append(os.getloadavg()[0])
        start = time.perf_counter()
        tracks = find_tracks(video, detector, options)
        pass1.append(time.perf_counter() - start)
        start = time.perf_counter()
        scores = score_tracks(video, scored(tracks), scorer, options)
        pass2.append(time.perf_counter() - start)
        times.append(pass1[-1] + pass2[-1])
    return tracks, scores, pass1, pass2


def child(spec: dict) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(THREADS)
    task, video, repeats = spec["task"], spec["video"], spec["repeats"]
    times, extra = [], {}
    loads = []
    if task == "lrs":
        from talkingface.evaluation.syncnet.scorer import SyncNetScorer

        scorer = SyncNetScorer(spec["weights"]["syncnet"], device="cpu")  # model load not timed (both sides)
        for _ in range(repeats):
            loads.append(os.getloadavg()[0])
            start = time.perf_counter()
            result = scorer.score_video(video)
            times.append(time.perf_counter() - start)
        extra = {"lse_d": result["lse_d"], "lse_c": result["lse_c"]}
    elif task == "face":
        from talkingface.evaluation.syncnet.face_protocol import S3FDProtocolDetector
        from talkingface.evaluation.syncnet.face_tracks import FaceTrack
        from talkingface.evaluation.syncnet.scorer import SyncNetScorer
        from talkingface.face.s3fd import S3FDDetector

        scorer = SyncNetScorer(spec["weights"]["syncnet"], device="cpu")
        detector = S3FDProtocolDetector(S3FDDetector(spec["weights"]["s3fd"], device="cpu"))
        frames = spec["frames"]
        forced = FaceTrack(np.arange(frames), np.tile(np.array(spec["box"], dtype=np.float64), (frames, 1)))
        tracks, scores, pass1, pass2 = time_face_protocol(video, detector, scorer, repeats, times, loads,
                                                          scored=lambda found: [forced])
        extra = {"find_tracks_s": pass1, "score_forced_track_s": pass2, "tracks_found": len(tracks),
                 "lse_d": scores[0].lse_d, "lse_c": scores[0].lse_c}
    elif task == "face_default":  # the face protocol as shipped without sfd_face.pth: dlib detection, real tracks
        from talkingface.evaluation.syncnet.face_protocol import BackendDetector
        from talkingface.evaluation.syncnet.scorer import SyncNetScorer
        from talkingface.face import build_face_backend

        scorer = SyncNetScorer(spec["weights"]["syncnet"], device="cpu")
        detector = BackendDetector(build_face_backend("dlib"))
        tracks, scores, pass1, pass2 = time_face_protocol(video, detector, scorer, repeats, times, loads,
                                                          scored=lambda found: found)
        extra = {"find_tracks_s": pass1, "score_tracks_s": pass2,
                 "tracks": [[t.start, t.end] for t in tracks], "lse_d": [t.lse_d for t in scores]}
    elif task == "fid":
        from talkingface.evaluation.fid import InceptionFeatures, frechet_distance
        from talkingface.evaluation.syncnet.scorer import frame_chunks

        features = InceptionFeatures(spec["weights"]["inception"], device="cpu")
        for _ in range(repeats):
            loads.append(os.getloadavg()[0])
            start = time.perf_counter()
            feats = np.concatenate([features(chunk) for chunk in frame_chunks(video, 50)])
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        frechet_distance(feats, feats[::-1] + 1e-3)
        extra = {"frames": len(feats), "frechet_2048d_s": round(time.perf_counter() - start, 3)}
    else:
        raise ValueError(task)
    return {"task": task, "video": video, "seconds": [round(t, 3) for t in times], "best_s": round(min(times), 3),
            "median_s": round(statistics.median(times), 3), "load_1min": loads, **extra,
            "peak_rss_mb": peak_rss_mb()}


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}


def last_json(result: subprocess.CompletedProcess, what: str) -> dict:
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-5:]
        return {"failed": what, "stderr_tail": tail}
    lines = [line for line in result.stdout.strip().splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def run_ours(spec: dict) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                            env=env(), cwd=ROOT)
    return last_json(result, f"ours {spec['task']} {spec['video']}")


def run_ref(args, script: str, arguments: list[str]) -> dict:
    result = subprocess.run([args.ref_python, str(RUNNERS / script), "--wav2lip", args.wav2lip,
                             "--syncnet-python", args.syncnet_python, *arguments],
                            capture_output=True, text=True, env=env())
    return last_json(result, f"reference {script}")


# ---------------------------------------------------------------- main

def per_minute(seconds: float) -> float:
    return round(60.0 / seconds, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wav2lip", default="/tmp/ref/Wav2Lip", help="checkout of Rudrabha/Wav2Lip")
    parser.add_argument("--syncnet-python", default="/tmp/ref/syncnet_python",
                        help="checkout of joonson/syncnet_python")
    parser.add_argument("--ref-python", default="/tmp/refvenv/bin/python", help="python of the reference venv")
    parser.add_argument("--quick", action="store_true", help="short videos, one repeat (a smoke run)")
    parser.add_argument("--repeats", type=int, default=2, help="repeats per measurement (best and median kept)")
    parser.add_argument("--lrs-seconds", type=float, nargs="*", default=[10.0, 60.0])
    parser.add_argument("--face-seconds", type=float, default=10.0)
    parser.add_argument("--face-runs", type=int, default=2,
                        help="face-protocol runs per side (reference: one process each)")
    parser.add_argument("--rss-seconds", type=float, nargs="*", default=[300.0],
                        help="extra LRS lengths for our peak-RSS series (ours only)")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--output", default=str(OUTPUT))
    parser.add_argument("--face-default-only", metavar="VIDEO",
                        help="time only our default face protocol (dlib) on this video (the face video of an earlier "
                             "run) and add it to --output next to that run's reference chain")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.face_default_only:
        add_face_default(args)
        return
    if args.quick:
        args.repeats, args.lrs_seconds, args.face_seconds, args.face_runs, args.rss_seconds = 1, [4.0], 4.0, 1, [8.0]
    import torch

    torch.set_num_threads(THREADS)
    work = Path(tempfile.mkdtemp(prefix="evaluation_speed_"))
    print(f"work dir {work}", flush=True)
    weights = write_weights(work)
    flops = count_flops(weights)
    window_gflop = flops["syncnet_lip_per_window"] + flops["syncnet_audio_per_window"]
    peaks = [matmul_peak_gflops()]
    print(json.dumps({"gflop": flops, "matmul_peak_gflops": peaks[0]}), flush=True)

    lrs = []
    for seconds in args.lrs_seconds:
        video = work / f"lrs_{seconds:g}s.mp4"
        write_video(video, 256, 256, seconds, 224)
        frames = int(seconds * FPS)
        windows = frames - 5
        repeats = args.repeats if seconds <= 30 else 1  # long videos: one run each side
        ours = run_ours({"task": "lrs", "video": str(video), "repeats": repeats, "weights": weights})
        row = {"video_seconds": seconds, "size": "256x256", "windows": windows, "ours": ours}
        if not args.skip_reference:
            ref = run_ref(args, "ref_lrs.py", ["--weights", weights["syncnet"], "--tmp-dir", str(work / "ref_lrs_tmp"),
                                               "--repeats", str(repeats), str(video)])
            row["reference"] = ref
        if "best_s" in ours:
            ours.update(videos_per_min=per_minute(ours["best_s"]),
                        gflops=round(windows * window_gflop / ours["best_s"], 1))
        ref = row.get("reference", {})
        if "results" in ref:
            r = ref["results"][0]
            ref.update(best_s=round(r["best_s"], 3), videos_per_min=per_minute(r["best_s"]),
                       gflops=round(r["windows"] * window_gflop / r["best_s"], 1))
            if "best_s" in ours:
                row["speedup"] = round(r["best_s"] / ours["best_s"], 2)
        lrs.append(row)
        print(json.dumps(row), flush=True)

    # face protocol: a 720p video, S3FD pass on every frame + one full-length track scored
    video = work / f"face_720p_{args.face_seconds:g}s.mp4"
    box = write_video(video, 1280, 720, args.face_seconds, FACE_SIDE_720P)
    frames = int(args.face_seconds * FPS)
    face = {"video_seconds": args.face_seconds, "size": "1280x720", "frames": frames, "forced_box": box,
            "ours": run_ours({"task": "face", "video": str(video), "repeats": args.face_runs, "weights": weights,
                              "frames": frames, "box": box})}
    face_gflop = frames * flops["s3fd_per_720p_frame_at_0.25"] + (frames - 5) * window_gflop
    if not args.skip_reference:
        runs = []
        for i in range(args.face_runs):
            runs.append(run_ref(args, "ref_face.py", [
                "--syncnet-weights", weights["syncnet"], "--s3fd-weights", weights["s3fd"],
                "--data-dir", str(work / f"ref_face_{i}"), "--box", *map(str, box), str(video)]))
        face["reference_runs"] = runs
        good = [r for r in runs if "chain_s" in r]
        if good:
            best = min(r["chain_s"] for r in good)
            face["reference"] = {"best_chain_s": best, "videos_per_min": per_minute(best),
                                 "gflops": round(face_gflop / best, 1)}
    ours = face["ours"]
    if "best_s" in ours:
        ours.update(videos_per_min=per_minute(ours["best_s"]), gflops=round(face_gflop / ours["best_s"], 1))
        if "reference" in face:
            face["speedup"] = round(face["reference"]["best_chain_s"] / ours["best_s"], 2)
    face["ours_default_detector"] = face_default_run(str(video), weights, args.face_runs,
                                                     face.get("reference", {}).get("best_chain_s"))
    print(json.dumps(face), flush=True)

    # FID: Inception features of every frame of one 256x256 video (ours only, see the docs)
    fid_video = work / f"lrs_{args.lrs_seconds[0]:g}s.mp4"
    fid = run_ours({"task": "fid", "video": str(fid_video), "repeats": 1, "weights": weights})
    if "best_s" in fid:
        fid.update(videos_per_min=per_minute(fid["best_s"]),
                   gflops=round(fid["frames"] * flops["inception_per_image"] / fid["best_s"], 1))
    print(json.dumps(fid), flush=True)

    # peak RSS of our LRS scoring vs video length (the timing runs above plus longer videos)
    rss = [{"video_seconds": row["video_seconds"], "peak_rss_mb": row["ours"].get("peak_rss_mb"),
            "reference_peak_rss_mb": row.get("reference", {}).get("peak_rss_mb")} for row in lrs]
    for seconds in args.rss_seconds:
        video = work / f"lrs_{seconds:g}s.mp4"
        write_video(video, 256, 256, seconds, 224)
        ours = run_ours({"task": "lrs", "video": str(video), "repeats": 1, "weights": weights})
        rss.append({"video_seconds": seconds, "peak_rss_mb": ours.get("peak_rss_mb"), "seconds": ours.get("best_s")})
        video.unlink()
        print(json.dumps(rss[-1]), flush=True)
    peaks.append(matmul_peak_gflops())
    peak = max(peaks)

    def fraction(gflops):
        return None if gflops is None else round(gflops / peak, 3)
    for row in lrs:
        for side in ("ours", "reference"):
            if "gflops" in row.get(side, {}):
                row[side]["fraction_of_matmul_peak"] = fraction(row[side]["gflops"])
    for part in (face.get("ours", {}), face.get("reference", {}), fid):
        if "gflops" in part:
            part["fraction_of_matmul_peak"] = fraction(part["gflops"])
    result = {
        "benchmark": "evaluation_speed",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {THREADS} torch threads, torch {torch.__version__}",
        "quick": args.quick, "repeats": args.repeats,
        "reference_commits": {"Wav2Lip": git_head(args.wav2lip), "syncnet_python": git_head(args.syncnet_python)},
        "gflop": {k: round(v, 4) for k, v in flops.items()}, "syncnet_gflop_per_window": round(window_gflop, 4),
        "matmul_peak_gflops": [round(p, 1) for p in peaks],
        "load_1min_at_end": os.getloadavg()[0],
        "lrs": lrs, "face": face, "fid_ours": fid, "peak_rss_lrs_ours": rss,
        "notes": "best-of-repeats wall times, model loading excluded on both sides; random weights of the release "
                 "layouts (S3FD face logits biased to -20: no detections on either side); the reference face chain is "
                 "run_pipeline.py (unmodified, via runpy) + its crop_video on one forced full-length track + "
                 "evaluate on that crop; ours is find_tracks + score_tracks on the same forced track",
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.output), result)
    print(json.dumps(result, indent=2))


def face_default_run(video: str, weights: dict, repeats: int, reference_chain_s: float | None) -> dict:
    """Our face protocol with the default offline detector on ``video``, against the reference chain's time."""
    ours = run_ours({"task": "face_default", "video": video, "repeats": repeats, "weights": weights})
    if "best_s" in ours:
        ours["videos_per_min"] = per_minute(ours["best_s"])
        if reference_chain_s:
            ours["speedup_vs_reference_chain"] = round(reference_chain_s / ours["best_s"], 2)
    return ours


def add_face_default(args) -> None:
    """``--face-default-only``: add the default-detector face timing to an existing result file."""
    result = json.loads(Path(args.output).read_text())
    folder = Path(args.face_default_only).parent
    weights = {"syncnet": str(folder / "syncnet_v2.model")}
    reference = result.get("face", {}).get("reference", {}).get("best_chain_s")
    result["face"]["ours_default_detector"] = face_default_run(args.face_default_only, weights, args.repeats, reference)
    atomic_write_json(Path(args.output), result)
    print(json.dumps(result["face"]["ours_default_detector"], indent=2))


def git_head(path: str) -> str | None:
    marker = Path(path) / ".reference_commit"
    return marker.read_text().strip() if marker.exists() else None


if __name__ == "__main__":
    main()
