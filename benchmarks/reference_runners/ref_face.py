"""Reference face protocol: joonson/syncnet_python's ``run_pipeline.py`` run unmodified (runpy, same
arguments as Wav2Lip's ``calculate_scores_real_videos.sh``) followed by Wav2Lip's ``evaluate`` on the
crop, with the stages timed; prints one JSON line.

With random S3FD weights the detector finds no face, so ``run_pipeline.py`` itself writes no track. The
crop stage is therefore timed by calling the script's own ``crop_video`` (from the globals runpy returns)
on one forced full-length track with the given box, then ``evaluate`` runs on the crop it wrote, as
``calculate_scores_real_videos.py`` does. Stage times come from wrapping ``subprocess.call`` (the ffmpeg
commands), ``S3FD.detect_faces`` and ``SceneManager.detect_scenes``.

    /tmp/refvenv/bin/python ref_face.py --wav2lip W --syncnet-python S --syncnet-weights syncnet_v2.model \
        --s3fd-weights sfd_face.pth --data-dir DIR --box x1 y1 x2 y2 VIDEO
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import runpy
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from process_memory import peak_rss_mb  # noqa: E402
from ref_shims import install  # noqa: E402

STAGES: dict[str, float] = defaultdict(float)
COUNTS: dict[str, int] = defaultdict(int)


def timed(name: str, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            STAGES[name] += time.perf_counter() - start
            COUNTS[name] += 1
    return wrapper


def ffmpeg_label(command) -> str:
    text = command if isinstance(command, str) else " ".join(command)
    if "-f image2" in text:
        return "ffmpeg_extract_jpeg"
    if "pcm_s16le" in text:
        return "ffmpeg_extract_wav"
    if "-r 25" in text:
        return "ffmpeg_convert_avi"
    if "-c:v copy" in text:
        return "ffmpeg_mux_crop"
    if "-ss" in text:
        return "ffmpeg_cut_audio"
    return "ffmpeg_other"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wav2lip", required=True)
    parser.add_argument("--syncnet-python", required=True)
    parser.add_argument("--syncnet-weights", required=True)
    parser.add_argument("--s3fd-weights", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--box", type=float, nargs=4, required=True, help="forced track box x1 y1 x2 y2")
    parser.add_argument("video")
    args = parser.parse_args()
    env = install(args.syncnet_python, args.wav2lip)
    syncnet_python = Path(args.syncnet_python).resolve()

    import numpy as np
    import detectors
    import detectors.s3fd as s3fd_module
    from scenedetect.scene_manager import SceneManager

    s3fd_module.PATH_WEIGHT = str(Path(args.s3fd_weights).resolve())  # read by S3FD.__init__
    original_init = s3fd_module.S3FD.__init__
    s3fd_module.S3FD.__init__ = timed("s3fd_load", lambda self, device="cuda": original_init(self, device="cpu"))
    detections = [0]
    original_detect = s3fd_module.S3FD.detect_faces

    def detect_faces(self, *a, **k):
        boxes = original_detect(self, *a, **k)
        detections[0] += len(boxes)
        return boxes
    s3fd_module.S3FD.detect_faces = timed("s3fd_detect", detect_faces)
    SceneManager.detect_scenes = timed("scene_detect", SceneManager.detect_scenes)
    original_call = subprocess.call

    def call(command, *a, **k):
        k.setdefault("stdout", subprocess.DEVNULL)
        k.setdefault("stderr", subprocess.DEVNULL)
        return timed(ffmpeg_label(command), original_call)(command, *a, **k)
    subprocess.call = call

    data_dir = str(Path(args.data_dir).resolve())
    sys.argv = ["run_pipeline.py", "--videofile", str(Path(args.video).resolve()), "--reference", "wav2lip",
                "--data_dir", data_dir]
    cwd = os.getcwd()
    os.chdir(syncnet_python)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # its per-frame progress lines
        g = runpy.run_path(str(syncnet_python / "run_pipeline.py"), run_name="__main__")
    pipeline_s = time.perf_counter() - start
    os.chdir(cwd)
    pipeline_stages = {k: round(v, 3) for k, v in STAGES.items()}
    STAGES.clear()
    opt = g["opt"]
    frames = len([f for f in os.listdir(os.path.join(opt.frames_dir, opt.reference)) if f.endswith(".jpg")])

    # Forced full-length track through the script's own crop_video (XVID crop + ffmpeg audio cut + mux).
    os.makedirs(os.path.join(opt.tmp_dir, opt.reference), exist_ok=True)
    track = {"frame": np.arange(frames), "bbox": np.tile(np.array(args.box, dtype=float), (frames, 1))}
    cropfile = os.path.join(opt.crop_dir, opt.reference, "00000")
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        g["crop_video"](opt, track, cropfile)
    crop_s = time.perf_counter() - start
    crop_stages = {k: round(v, 3) for k, v in STAGES.items()}
    STAGES.clear()

    from SyncNetInstance_calc_scores import SyncNetInstance  # calculate_scores_real_videos.py
    s = SyncNetInstance()
    s.loadParameters(args.syncnet_weights)
    eval_opt = argparse.Namespace(batch_size=20, vshift=15, tmp_dir=opt.tmp_dir, reference=opt.reference)
    start = time.perf_counter()
    offset, conf, dist = s.evaluate(eval_opt, videofile=cropfile + ".avi")
    evaluate_s = time.perf_counter() - start
    evaluate_stages = {k: round(v, 3) for k, v in STAGES.items()}
    load_s = pipeline_stages.get("s3fd_load", 0.0)
    print(json.dumps({
        "env": env, "video": args.video, "frames": frames, "detections": detections[0],
        "tracks_found_by_pipeline": len(g["alltracks"]),
        "run_pipeline_s": round(pipeline_s, 3), "crop_video_forced_track_s": round(crop_s, 3),
        "evaluate_crop_s": round(evaluate_s, 3), "s3fd_load_s": load_s,
        "chain_s": round(pipeline_s - load_s + crop_s + evaluate_s, 3),
        "stages_s": {"run_pipeline": pipeline_stages, "crop_video": crop_stages,
                     "evaluate": evaluate_stages}, "stage_calls": dict(COUNTS), "lse_d": float(dist), "lse_c": float(conf),
        "load_1min_before": load, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
