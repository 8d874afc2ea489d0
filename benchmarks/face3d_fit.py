"""Per-video 3DMM fitting (the ``face3d`` preprocessing step, method ``fit``) on the demo clips with the synthetic
stand-in: throughput in frames/s with the default schedule, and how well the fitted jaw-opening coefficient follows
the mouth (its correlation with dlib's inner-lip gap and with the demo's ground-truth opening), for the 1,000-vertex
stand-in and the BFM-sized one (35,709 vertices, 70,789 triangles). Also the cost of one optimisation step per
frame (landmark-only and with the photometric loss) and the rasterizer's share of the latter.
Writes benchmarks/results/face3d_fit.json (``--tiny``: one short run, nothing written).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from talkingface.io_utils import atomic_write_json  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "results" / "face3d_fit.json"
THREADS = 2


def demo_store(root: Path, clips: int):
    from talkingface.pipeline import preprocess

    config = {"progress": False, "demo": {"clips": clips},
              "data": {"root": str(root / "raw"), "processed_dir": str(root / "processed")}}
    return preprocess("demo", config)


def step_costs(bfm: Path, batch: int = 16) -> dict:
    """ms per frame of one Adam step's loss + backward at ``batch`` frames: landmark-only, with the photometric
    loss, and the rasterizer (render forward + backward) alone."""
    from talkingface.face3d import ParametricFaceModel, render, screen_vertices
    from talkingface.face3d.fitting import FitObjective, FitSettings, frame_width

    model = ParametricFaceModel(bfm)
    settings = FitSettings(image_size=224, batch_size=batch)
    objective = FitObjective(model, settings, torch.device("cpu"))
    shared = {name: torch.zeros(1, 80, requires_grad=True) for name in ("id", "tex")}
    frame = torch.zeros(batch, frame_width(model), requires_grad=True)
    landmarks = model.compute_for_render(torch.zeros(1, 257))[3].expand(batch, -1, -1)
    images = torch.rand(batch, 224, 224, 3)
    valid = torch.ones(batch, dtype=torch.bool)

    def best(run, rounds: int = 5) -> float:
        times = []
        for _ in range(rounds + 1):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return min(times[1:]) * 1e3 / batch

    def step(with_images: bool):
        loss, _ = objective(shared, frame, images if with_images else None, landmarks, valid)
        loss.backward()

    vertices, _, colour, _ = model.compute_for_render(torch.zeros(batch, 257))
    screen = screen_vertices(model, vertices, 224).detach().requires_grad_(True)
    colour = colour.detach().requires_grad_(True)

    def raster():
        image, _ = render(screen, objective.faces, colour, 224, 224)
        image.sum().backward()

    return {"batch": batch, "landmark_step_ms_per_frame": round(best(lambda: step(False)), 3),
            "photometric_step_ms_per_frame": round(best(lambda: step(True)), 2),
            "render_fwd_bwd_ms_per_frame": round(best(raster), 2)}


def fit_clips(store, bfm: Path, config_overrides: dict) -> dict:
    from talkingface.config import load_config
    from talkingface.data.face3d_step import Face3dStep, read_face3d
    from talkingface.data.steps import complete_clips

    config = load_config(dataset="demo", config={"progress": False, "face3d": {"bfm_folder": str(bfm),
                                                                              "method": "fit", **config_overrides}})
    step = Face3dStep(config)
    rows, frames, seconds = [], 0, 0.0
    for clip in complete_clips(store):
        start = time.perf_counter()
        step.run(clip)
        elapsed = time.perf_counter() - start
        result = read_face3d(clip)
        landmarks = clip.landmarks()
        gap = np.linalg.norm(landmarks[:, 66] - landmarks[:, 62], axis=1)
        opening = -result.coeffs[:, 80]  # Deep3DFaceRecon exp starts at 80; the stand-in opens with -exp[0]
        truth = np.asarray(json.loads(Path(clip.meta["source"]).with_suffix(".json").read_text())["mouth_opening"])
        truth = truth[:len(opening)]
        rows.append({"clip": clip.name, "frames": len(opening), "seconds": round(elapsed, 2),
                     "r_lip_gap": round(float(np.corrcoef(opening, gap)[0, 1]), 4),
                     "r_truth": round(float(np.corrcoef(opening, truth)[0, 1]), 4),
                     "landmark_rms_px": round(result.info["landmark_rms_px"]["mean"], 3)})
        print(json.dumps(rows[-1]), flush=True)
        frames += len(opening)
        seconds += elapsed
    return {"clips": rows, "frames": frames, "seconds": round(seconds, 1), "frames_per_s": round(frames / seconds, 3),
            "min_r_lip_gap": min(r["r_lip_gap"] for r in rows), "min_r_truth": min(r["r_truth"] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8, help="demo clips fitted with the 1,000-vertex stand-in")
    parser.add_argument("--large-clips", type=int, default=2, help="of them, fitted with the BFM-sized stand-in")
    parser.add_argument("--tiny", action="store_true", help="one clip, a short schedule, nothing written")
    args = parser.parse_args()
    from talkingface.face3d import write_standin_bfm

    torch.set_num_threads(THREADS)
    quick = {"fit": {"key_frames": 3, "key_landmark_steps": 50, "key_steps": 2, "frame_landmark_steps": 20,
                     "frame_steps": 1}} if args.tiny else {}
    result = {"benchmark": "face3d_fit", "machine": f"{platform.machine()}, {os.cpu_count()} cores, {THREADS} torch "
              f"threads, torch {torch.__version__}", "schedule": "tiny" if args.tiny else "default (configs)",
              "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = demo_store(root, 1 if args.tiny else args.clips)
        sizes = [(1000, None)] if args.tiny else [(1000, None), (35709, args.large_clips)]
        for vertices, limit in sizes:
            bfm = root / f"bfm{vertices}"
            write_standin_bfm(bfm, vertices, raw=False, derived=True)
            costs = step_costs(bfm)
            print(json.dumps({"vertices": vertices, **costs}), flush=True)
            if limit is not None:  # fit only the first clips with the large mesh
                from talkingface.data import ClipStore
                from talkingface.data.steps import complete_clips

                sub = ClipStore(root / f"sub{vertices}")
                (sub.root / "clips").mkdir(parents=True)
                for clip in complete_clips(store)[:limit]:
                    (sub.root / "clips" / clip.name).symlink_to(clip.root)
                fitted = fit_clips(sub, bfm, quick)
            else:
                fitted = fit_clips(store, bfm, quick)
            result["runs"].append({"vertices": vertices, "step_costs": costs, **fitted})
    print(json.dumps(result, indent=2))
    if not args.tiny:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(OUTPUT, result)


if __name__ == "__main__":
    main()
