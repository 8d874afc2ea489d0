"""Preprocessing throughput (frames/s) at 720p and 1080p per face backend, and peak RSS vs length.

Each measurement runs in a fresh child process (so peak RSS is its own): a synthetic talking-head
video is written (the astronaut photo from scikit-image, moving, with speech-like audio) and then
processed by ``talkingface.data.preprocess.process_source`` exactly as a dataset build does:
decode + 25 fps resampling, face detection every 5 frames + 68 landmarks every frame + smoothing,
H.264 encoding of the stored frames, 16 kHz audio, mel features. Writes
benchmarks/results/preprocess_throughput.json.

    python benchmarks/preprocess_throughput.py [--seconds 20] [--rss-minutes 1 3 10]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_memory import peak_rss_mb  # noqa: E402
from talkingface.io_utils import atomic_write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "benchmarks" / "results" / "preprocess_throughput.json"
RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}


def write_source(path: Path, width: int, height: int, seconds: float) -> None:
    """A moving face on a still background, with an amplitude-modulated tone as audio (streamed)."""
    import numpy as np
    from skimage.data import astronaut
    from skimage.transform import resize

    from talkingface.media import VideoWriter

    side = height // 2
    face = (resize(astronaut()[0:300, 80:380], (side, side), anti_aliasing=True) * 255).astype(np.uint8)
    background = np.linspace(40, 120, width, dtype=np.uint8)[None, :, None].repeat(height, 0).repeat(3, 2)
    t = np.arange(int(seconds * 16000)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    with VideoWriter(path, 25, audio=audio, preset="ultrafast", crf=23) as writer:
        for i in range(int(seconds * 25)):
            frame = background.copy()
            x = width // 2 - side // 2 + int(20 * np.sin(i / 15))
            y = height // 4 + int(8 * np.cos(i / 20))
            frame[y:y + side, x:x + side] = face
            writer.write(frame)


def measure(resolution: str, backend: str, seconds: float, extra: dict) -> dict:
    """Child-process body: write the source, process it, report time and peak RSS."""
    import talkingface
    from talkingface.data import ClipStore
    from talkingface.data.preprocess import Segment, make_face_backend, process_source

    width, height = RESOLUTIONS[resolution]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.mp4"
        write_source(source, width, height, seconds)
        config = talkingface.load_config(dataset="custom", config={
            "progress": False, "log_level": "WARNING",
            "preprocess": {"workers": 1, "face_backend": backend, **extra}})
        face_backend = make_face_backend(config)  # model loading is a one-off per worker, not per frame
        rss_before = peak_rss_mb()
        start = time.perf_counter()
        process_source(source, [Segment("clip")], ClipStore(Path(tmp) / "store"), config, face_backend)
        elapsed = time.perf_counter() - start
    frames = int(seconds * 25)
    return {"resolution": resolution, "backend": backend, "options": extra, "frames": frames,
            "seconds": round(elapsed, 2), "frames_per_s": round(frames / elapsed, 1),
            "peak_rss_mb": peak_rss_mb(),
            "rss_before_processing_mb": rss_before}


def run_child(resolution: str, backend: str, seconds: float, extra: dict) -> dict:
    spec = json.dumps({"resolution": resolution, "backend": backend, "seconds": seconds, "extra": extra})
    result = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True)
    if result.returncode != 0:
        return {"resolution": resolution, "backend": backend, "options": extra,
                "skipped": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the throughput videos")
    parser.add_argument("--rss-minutes", type=float, nargs="*", default=[1.0, 3.0],
                        help="720p video lengths for the peak-RSS series")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(measure(spec["resolution"], spec["backend"], spec["seconds"], spec["extra"])))
        return
    runs = []
    for resolution in RESOLUTIONS:
        for backend, extra in (("dlib", {}), ("dlib", {"detect_every": 1}), ("face_alignment", {})):
            runs.append(run_child(resolution, backend, args.seconds, extra))
            print(json.dumps(runs[-1]), flush=True)
    memory = []
    for minutes in args.rss_minutes:
        memory.append(run_child("720p", "dlib", minutes * 60, {}))
        print(json.dumps(memory[-1]), flush=True)
    import torch

    result = {"benchmark": "preprocess_throughput", "machine": f"{platform.machine()}, {torch.get_num_threads()} "
              f"threads, torch {torch.__version__}", "throughput": runs, "peak_rss_720p": memory}
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUTPUT, result)


if __name__ == "__main__":
    main()
