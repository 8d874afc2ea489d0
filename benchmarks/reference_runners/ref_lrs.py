"""Reference LRS protocol: Wav2Lip's ``SyncNetInstance.evaluate`` (evaluation/scores_LSE), as
``calculate_scores_LRS.py`` calls it (batch_size 20, vshift 15), on each video; prints one JSON line.

    /tmp/refvenv/bin/python ref_lrs.py --wav2lip W --syncnet-python S --weights syncnet_v2.model \
        --tmp-dir DIR --repeats 2 VIDEO [VIDEO ...]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from process_memory import peak_rss_mb  # noqa: E402
from ref_shims import install  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wav2lip", required=True)
    parser.add_argument("--syncnet-python", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--tmp-dir", required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("videos", nargs="+")
    args = parser.parse_args()
    env = install(args.syncnet_python, args.wav2lip)
    from SyncNetInstance_calc_scores import SyncNetInstance  # Wav2Lip's copy, as calculate_scores_LRS.py
    from scipy.io import wavfile

    s = SyncNetInstance()
    s.loadParameters(args.weights)  # copies every key of the file into S's state dict
    opt = argparse.Namespace(batch_size=20, vshift=15, tmp_dir=args.tmp_dir, reference="lrsbench",
                             initial_model=args.weights)
    results = []
    for video in args.videos:
        times, out = [], None
        for _ in range(args.repeats):
            load = os.getloadavg()[0]
            start = time.perf_counter()
            offset, conf, dist = s.evaluate(opt, videofile=video)
            times.append(time.perf_counter() - start)
        frames = len([f for f in os.listdir(os.path.join(args.tmp_dir, "lrsbench")) if f.endswith(".jpg")])
        rate, audio = wavfile.read(os.path.join(args.tmp_dir, "lrsbench", "audio.wav"))
        windows = min(frames, math.floor(len(audio) / 640)) - 5
        results.append({"video": video, "seconds": times, "best_s": min(times), "median_s": statistics.median(times),
                        "windows": windows, "frames": frames, "lse_d": float(dist), "lse_c": float(conf),
                        "offset": int(offset), "load_1min_before_last": load})
    print(json.dumps({"env": env, "results": results, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
