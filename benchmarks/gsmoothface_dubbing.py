"""GSmoothFace dubbing on 2 CPU threads: A2EP's training step and its autoregressive inference against audio length,
TAFT at 256² and 512², MAFB's render and blend, ``generate`` end to end split into phases, the networks as shares of
the fp32 matmul limit; peak RSS against video length. Writes benchmarks/results/gsmoothface_dubbing.json.

Random weights in the released sizes (timing only): ``build_model("gsmoothface")`` with its defaults: A2EP with
wav2vec2-base-960h's architecture randomly initialised (``a2ep.wav2vec2_fallback: random``, the weights' path pointed
away so a machine that has them measures the same thing), feature_dim 1024, 107.9 M parameters; TAFT base 64 / max
256 channels / 3 levels / 2 convs per level at image_size 512 (6.1 M). The face model is the synthetic stand-in in
Deep3DFaceRecon's convention (``write_standin_bfm(folder, vertices)``): 1,000 vertices, and a BFM-sized one (35,709
vertices) for MAFB. Input: a synthetic 1280 x 720 talking head at 25 fps (scikit-image's astronaut, face ~300 px,
swaying 3 px, a 220 Hz tone; ``videoretalking_dubbing.head_video``), landmarks from the loop's face tracking (dlib).

Stages (docs/gsmoothface.md):
- A2EP training: one optimiser step (forward + backward + Adam, the model's own ``configure_optimizers``) of the
  official free-running forward (``teacher_forcing=False``, the released config: 100 autoregressive steps, each
  decoding the whole prefix without a target mask) on a ``--train-frames`` (100, 4 s) window at batch 1, template and
  face_vertex over the 1,000-vertex stand-in's vertices, the mouth-weighted vertex loss (``mouth_mask: derived``,
  1.8); and the teacher-forced forward for comparison (one decoder pass; the official teacher-forced batch: template
  zeros (1, 1, 64), face_vertex the expressions, MSE on them). GFLOP per frame of the whole step (forward and
  backward, ``torch.utils.flop_counter``) and of the forward alone, wav2vec 2.0's share of the forward.
- A2EP inference: ``model.predict_expressions`` (wav2vec 2.0 and ``a2ep.predict`` per chunk of <= 600 frames,
  chunks overlapping by ``chunk_overlap`` 50 and cross-faded) on ``--lengths`` (2, 10, 60) s of audio: seconds,
  frames/s, seconds per frame (it grows with length: the official loop re-decodes the whole prefix at every step, so
  a chunk of n frames costs ~n² decoder rows, and the cross-attention's keys and values of the whole chunk's audio
  are recomputed at every step), wav2vec 2.0's seconds, GFLOP (counted on a meta-device copy, chunk by chunk: the
  timed run is not slowed by the counter) and the share of the matmul peak. 60 s of audio are ~15 TFLOP (chunks of
  600, 600 and 400 frames): ~3-4 minutes on 2 quiet cores.
- TAFT (``model.taft``, eval, no_grad) at ``--taft-sizes`` (256², 512²) at batch 1, and at batch ``--batch`` (4) at
  the first size; GFLOP per frame, share.
- MAFB: ``model.blender().blend`` of one frame (render at 224 with the plain-PyTorch rasterizer, 8-bit, the closing
  and dilation, the move into the 512 box image) with the 1,000- and the 35,709-vertex stand-in, and the render alone;
  the tracked head's box and ``align_img`` parameters, random identity and expressions. No FLOP ratio: rasterizing,
  the z-buffer's scatter_reduce, the barycentric gathers and the morphology are scatter/gather work, not matrix
  products (docs/face3d.md).
- end to end: ``model.generate(video, video, out)`` on a ``--e2e-seconds`` (4) 720p clip (its own tone as the audio),
  measured as ``talkingface benchmark`` measures (``dub_runs.dub_run``: a child process, the stages the loop and
  GSmoothFace's hooks mark: tracking, 3dmm fit, a2ep, mafb, crop, generator (TAFT), paste, audio feature, decode,
  encode), the released sizes, the 1,000-vertex stand-in and a SHORT fit schedule (``face3d.method: fit``,
  ``SHORT_FIT``) for the target's coefficients (the fit's own cost: benchmarks/face3d_fit.py). The first dub
  computes the target's coefficients, the second follows an untimed dub of the same video and reuses them.
- peak RSS: the same measuring on a 10 s and a 60 s 720p clip (``dub_runs.memory_series``: VmHWM per stage), with
  the cheap configuration ``CHEAP`` (A2EP on the ``mfcc`` feature with feature_dim 64, TAFT at 128 px with 16 / 64
  channels and one conv per level, the short fit) so that a minute of video dubs in minutes; memory must not grow
  with the video's length.

    .venv-test/bin/python benchmarks/gsmoothface_dubbing.py            # the default run (~25 min on 2 cores)
    .venv-test/bin/python benchmarks/gsmoothface_dubbing.py --quick    # a smoke run (1-5 min), writes nothing
    .venv-test/bin/python benchmarks/gsmoothface_dubbing.py --quick --out /tmp/gsmoothface_quick.json

The default run's time goes mostly to the end-to-end child (TAFT at 512² is ~350 GFLOP a frame: two calls on 100
frames, ~10 min), the 60 s memory run (~6 min), A2EP's 60 s of audio (~3 min) and its training steps; a busy
machine doubles or triples that (MAFB's ~1,400 small tensor operations per frame, ~900 of them the morphology,
suffer most: see ``other_cpu_cores``).

``--quick`` runs every stage at reduced lengths and sizes (a 25-frame training window, 2 s and 4 s of audio, TAFT at
128² and 256², a 4,000-vertex large stand-in, a 1 s end-to-end clip with TAFT at 128 px, 1 s and 2 s memory runs) and
writes nothing unless ``--out`` is given. The run waits (up to ``--wait-minutes``, 10) for the 1-minute load average to
fall below ``--wait-load`` (0.7) first and records the load before and after; every timing records
``other_cpu_cores``, the cores other processes kept busy meanwhile (``Contention``), so a disturbed stage shows.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import gc
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from audiodvp_dubbing import SHORT_FIT, Contention, merge, run_and_write, timed_calls, track, with_flops  # noqa: E402
from dub_runs import dub_run, memory_series  # noqa: E402
from trainer_overhead import matmul_peak_gflops  # noqa: E402
from videoretalking_dubbing import cpu_model, gflop, head_frame, head_video  # noqa: E402
from talkingface.benchmark.video import tone  # noqa: E402
from talkingface.profiling import StageRecorder, module_stage  # noqa: E402

OUTPUT = HERE / "results" / "gsmoothface_dubbing.json"
THREADS = 2
FPS = 25
SAMPLES_PER_FRAME = 640
SMALL_VERTICES = 1000
BFM_VERTICES = 35709
# the released sizes (configs/model/gsmoothface.yaml), random weights, the target's coefficients by a short fit
RELEASED = {"gsmoothface": {"a2ep": {"wav2vec2_fallback": "random",
                                     "wav2vec2_weights": "/nonexistent/wav2vec2-base-960h.safetensors"}},
            "face3d": {"method": "fit", "fit": SHORT_FIT}}
# the memory runs' configuration: everything the dub does, with small networks and a short fit
CHEAP = {"gsmoothface": {"a2ep": {"audio_encoder": "feature", "audio_feature": "mfcc", "feature_dim": 64},
                         "taft": {"image_size": 128, "base_nc": 16, "max_nc": 64, "descriptor_nc": 32,
                                  "num_res_blocks": 1}},
         "face3d": {"method": "fit", "fit": SHORT_FIT}}


# ---- helpers ------------------------------------------------------------------------------------------------------
def standin(work: Path, vertices: int) -> Path:
    """The Deep3DFaceRecon-convention stand-in (BFM_model_front.mat, similarity_Lm3D_all.mat) in ``work``."""
    from talkingface.face3d import write_standin_bfm

    folder = work / f"bfm{vertices}"
    if not (folder / "BFM_model_front.mat").is_file():
        write_standin_bfm(folder, vertices=vertices, raw=False)
    return folder


def build(bfm: Path, overrides: dict | None = None):
    import talkingface

    torch.manual_seed(0)
    config = merge(merge({"progress": False, "face3d": {"bfm_folder": str(bfm)}}, RELEASED), overrides or {})
    return talkingface.build_model("gsmoothface", config).eval()


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """16 kHz float32: the head video's tone plus a little noise (random weights: any waveform costs the same)."""
    wave = tone(seconds)
    return (wave + 0.02 * np.random.default_rng(seed).standard_normal(len(wave))).astype(np.float32)


# ---- A2EP training ------------------------------------------------------------------------------------------------
def a2ep_batches(model, frames: int) -> tuple[dict, dict, torch.Tensor]:
    """The official free-running batch (template and face_vertex (1, T, 3N) over the face model's vertices) and the
    teacher-forced one (template zeros (1, 1, 64), face_vertex the expressions), and the expressions (1, T, 64)."""
    from talkingface.models.gsmoothface.data import normalise_waveform

    face = model.face_model()
    generator = torch.Generator().manual_seed(0)
    mean, id_base, exp_base = face.tensor("mean_shape"), face.tensor("id_base"), face.tensor("exp_base")
    identity = (torch.randn(1, id_base.shape[1], generator=generator) * 0.5) @ id_base.T
    template = (mean + identity).expand(frames, -1)[None].contiguous()
    exp = torch.randn(1, frames, exp_base.shape[1], generator=generator) * 0.5
    face_vertex = template + exp @ exp_base.T
    audio = torch.from_numpy(normalise_waveform(speech(frames / FPS)))[None]
    one_hot = model.one_hot(0)
    free = {"raw_audio": audio, "template": template, "face_vertex": face_vertex, "one_hot": one_hot,
            "exp_base": exp_base[None]}
    teacher = {"raw_audio": audio, "template": torch.zeros(1, 1, exp_base.shape[1]), "face_vertex": exp,
               "one_hot": one_hot, "exp_base": exp_base[None]}
    return free, teacher, exp


def a2ep_training(model, frames: int, rounds: int, peak: float) -> dict:
    """frames/s of one optimiser step, free-running (the release) and teacher-forced."""
    from talkingface.models.gsmoothface.data import mouth_weights

    face = model.face_model()
    weights = mouth_weights(face, "derived", float(model.options["a2ep"]["mouth_weight"]))
    model.a2ep.set_mouth_weights(weights)
    free, teacher, exp = a2ep_batches(model, frames)
    model.stage = "a2ep"
    model.train()
    optimizer = model.configure_optimizers()["optimizers"]["a2ep"]
    net = model.a2ep

    def loss_of(teacher_forcing: bool) -> torch.Tensor:
        if teacher_forcing:
            return F.mse_loss(net(teacher, teacher_forcing=True, return_loss=False, return_exp=True), exp)
        return net(free, torch.nn.MSELoss(), teacher_forcing=False)

    def step(teacher_forcing: bool) -> None:
        with torch.enable_grad():
            optimizer.zero_grad(set_to_none=True)
            loss_of(teacher_forcing).backward()
            optimizer.step()

    out: dict[str, Any] = {}
    for name, forcing in (("free_running", False), ("teacher_forced", True)):
        step_flops = gflop(lambda: step(forcing)) / frames  # forward + backward (also a warm-up)
        row = with_flops(timed_calls([lambda: step(forcing)], frames, rounds), step_flops, peak)
        row["gflop_per_frame_forward"] = round(gflop(lambda: loss_of(forcing)) / frames, 3)
        out[name] = row
        print(json.dumps({"a2ep_training": name, **row}), flush=True)
    out["gflop_per_frame_wav2vec2_forward"] = round(gflop(lambda: net.audio_features(free["raw_audio"], frames))
                                                    / frames, 3)
    out["window"] = {"frames": frames, "seconds": frames / FPS, "batch": 1, "vertices": int(face.num_vertices),
                     "mouth_vertices": int((weights > 1).sum())}
    out["what"] = ("one Adam step (zero_grad, forward, backward, step) of model.a2ep in train mode (dropout, "
                   "SpecAugment); free_running: the released teacher_forcing=False forward and the mouth-weighted "
                   "vertex loss; teacher_forced: one masked decoder pass, MSE on the expressions")
    optimizer.state.clear()  # Adam's moments: twice A2EP's size
    net.set_mouth_weights(None)
    model.eval()
    gc.collect()
    return out


# ---- A2EP inference -----------------------------------------------------------------------------------------------
class ChunkFlops:
    """GFLOP of ``a2ep.predict`` on a chunk of n frames, counted on a meta-device copy (shapes only: no compute)."""

    def __init__(self, a2ep: torch.nn.Module):
        self.meta = copy.deepcopy(a2ep).to("meta").eval()
        self.known: dict[int, float] = {}

    def __call__(self, frames: int) -> float:
        if frames not in self.known:
            audio = torch.zeros(1, frames * SAMPLES_PER_FRAME, device="meta")
            one_hot = torch.zeros(1, self.meta.obj_vector.in_features, device="meta")
            self.known[frames] = gflop(lambda: self.meta.predict({"raw_audio": audio, "one_hot": one_hot}))
        return self.known[frames]


def a2ep_inference(model, lengths: list[float], peak: float, counter: ChunkFlops) -> dict:
    """``predict_expressions`` on each length once (after a warm-up call on the shortest): seconds, frames/s,
    GFLOP."""
    from talkingface.models.gsmoothface.chunks import chunk_spans

    model.eval()
    one_hot = model.one_hot(0)
    length = min(model.a2ep.max_frames, int(model.options["a2ep"]["max_seq_len"]))
    overlap = min(int(model.options["chunk_overlap"]), length - 1)
    encoder = model.a2ep.audio_encoder
    model.predict_expressions(speech(min(lengths)), None, int(round(min(lengths) * FPS)), one_hot)
    rows = []
    with contextlib.ExitStack() as marks:
        for part in (encoder.feature_extractor, encoder.feature_projection, encoder.encoder):
            marks.enter_context(module_stage(part, "wav2vec2"))
        for seconds in lengths:
            frames = int(round(seconds * FPS))
            wav = speech(seconds, seed=1)
            spans = chunk_spans(frames, length, overlap)
            gc.collect()
            with Contention() as contention, StageRecorder(memory=False) as recorder:
                start = time.perf_counter()
                predicted = model.predict_expressions(wav, None, frames, one_hot)
                elapsed = time.perf_counter() - start
            wav2vec2 = recorder.stats["wav2vec2"].seconds if "wav2vec2" in recorder.stats else 0.0
            assert predicted.shape == (frames, 64)
            total = sum(counter(end - begin) for begin, end in spans)
            row = {"audio_seconds": seconds, "frames": frames, "chunks": [list(s) for s in spans],
                   "seconds": round(elapsed, 3), "frames_per_s": round(frames / elapsed, 3),
                   "ms_per_frame": round(1e3 * elapsed / frames, 2),
                   "wav2vec2_seconds": round(wav2vec2, 3), "decoder_seconds": round(elapsed - wav2vec2, 3),
                   "gflop": round(total, 1), "gflop_per_frame": round(total / frames, 3),
                   "gflop_per_s": round(total / elapsed, 2), "share_of_matmul_peak": round(total / elapsed / peak, 4),
                   "other_cpu_cores": contention.cores}
            rows.append(row)
            print(json.dumps({"a2ep_inference": row}), flush=True)
    first = rows[0]["ms_per_frame"]
    for row in rows:
        row["ms_per_frame_vs_shortest"] = round(row["ms_per_frame"] / first, 2)
    return {"runs": rows, "max_seq_len": length, "chunk_overlap": overlap,
            "what": "model.predict_expressions (wav2vec 2.0 + a2ep.predict per chunk, cross-faded), eval, no_grad, "
                    "one call per length after a warm-up call on the shortest; GFLOP counted per chunk on a "
                    "meta-device copy"}


# ---- TAFT ---------------------------------------------------------------------------------------------------------
def taft_stage(model, sizes: list[int], batch: int, frames: int, rounds: int, peak: float) -> dict:
    net = model.taft.eval()
    generator = torch.Generator().manual_seed(0)
    out: dict[str, Any] = {}
    for size in sizes:
        flops = None
        for b in sorted({1, batch}) if size == sizes[0] else [1]:
            reference, blended = (torch.rand(b, 3, size, size, generator=generator) * 2 - 1 for _ in range(2))
            if flops is None:
                flops = gflop(lambda: net(reference[:1], blended[:1]))
            calls = [lambda r=reference, x=blended: net(r, x) for _ in range(max(frames // b, 1))]
            out[f"size{size}_batch{b}"] = with_flops(timed_calls(calls, b, rounds), flops, peak)
            print(json.dumps({"taft": f"size{size}_batch{b}", **out[f"size{size}_batch{b}"]}), flush=True)
    return out


# ---- MAFB ---------------------------------------------------------------------------------------------------------
def mafb_stage(blender, folder: Path, frame: np.ndarray, landmarks: np.ndarray, valid: np.ndarray,
               box: tuple[int, int, int], frames: int, rounds: int) -> dict:
    """``blender.blend`` of one frame at a time, and ``render_face`` alone, on ``frames`` coefficient rows; the
    ``align_img`` parameters of the first tracked frame (``folder``: the face model's reference points)."""
    from talkingface.face3d import align_params, crop_portrait, landmarks_y_up, load_lm3d
    from talkingface.models.gsmoothface.rendering import render_face
    from talkingface.models.gsmoothface.taft_data import to_signed

    face = blender.model
    height, width = frame.shape[:2]
    first = int(np.flatnonzero(valid)[0])
    params = align_params(landmarks_y_up(landmarks[first], height), load_lm3d(folder), (width, height))[None]
    source = to_signed(crop_portrait(frame, box, blender.size))[None]
    rng = np.random.default_rng(0)
    coeffs = np.zeros((frames, 257), np.float32)
    for name in ("id", "exp", "tex"):
        part = face.coeff_slices[name]
        coeffs[:, part] = rng.normal(0, 0.5, (frames, part.stop - part.start))
    rows = torch.from_numpy(coeffs)
    blend = timed_calls([lambda c=c: blender.blend(source, c[None], params, box) for c in rows], 1, rounds)
    render = timed_calls([lambda c=c: render_face(face, c[None]) for c in rows], 1, rounds)
    coverage = render_face(face, rows[:1])[1]
    return {"blend": blend, "render_face_224": render, "vertices": int(face.num_vertices),
            "triangles": int(face.tensor("face_buf").shape[0]), "coverage_pixels_224": int(coverage.sum()),
            "image_size": blender.size, "box_left_top_size": [int(v) for v in box]}


# ---- the run ------------------------------------------------------------------------------------------------------
def run(args, work: Path, loads: list[float]) -> dict:
    import talkingface
    import transformers
    from talkingface.face3d import ParametricFaceModel, portrait_box
    from talkingface.models.gsmoothface.chunks import chunk_spans
    from talkingface.models.gsmoothface.faces import FaceBlender

    peak = [matmul_peak_gflops(size=args.peak_n)]
    print(json.dumps({"matmul_peak_gflops": round(peak[0], 1)}), flush=True)
    small = standin(work, SMALL_VERTICES)
    model = build(small)
    a2ep = model.a2ep
    parameters = {"a2ep": sum(p.numel() for p in a2ep.parameters()),
                  "a2ep_wav2vec2": sum(p.numel() for p in a2ep.audio_encoder.parameters()),
                  "a2ep_wav2vec2_cnn_frozen": sum(p.numel() for p in a2ep.audio_encoder.feature_extractor.parameters()),
                  "taft": sum(p.numel() for p in model.taft.parameters())}
    print(json.dumps({"parameters": parameters}), flush=True)

    training = a2ep_training(model, args.train_frames, args.rounds, max(peak))
    counter = ChunkFlops(a2ep)
    peak.append(matmul_peak_gflops(size=args.peak_n))
    inference = a2ep_inference(model, args.lengths, max(peak), counter)
    taft = taft_stage(model, args.taft_sizes, args.batch, args.taft_frames, args.rounds, max(peak))

    base = head_frame()
    video = head_video(work / f"e2e{args.e2e_seconds:g}.mp4", args.e2e_seconds, base)
    landmarks, valid, seconds = track(video, model.config)
    tracking = {"frames": len(landmarks), "seconds": round(seconds, 2),
                "frames_per_s": round(len(landmarks) / seconds, 2), "valid": int(valid.sum())}
    print(json.dumps({"tracking": tracking}), flush=True)
    t = model.options["taft"]
    box = portrait_box(landmarks, valid, float(t["crop_level"]), float(t["vertical_adjust"]))
    mafb: dict[str, Any] = {}
    blender = model.blender()
    mafb["standin_1000"] = mafb_stage(blender, small, base, landmarks, valid, box, args.mafb_frames, args.rounds)
    print(json.dumps({"mafb": "standin_1000", **mafb["standin_1000"]}), flush=True)
    start = time.perf_counter()
    large = standin(work, args.large_vertices)
    written = round(time.perf_counter() - start, 1)
    big = FaceBlender(ParametricFaceModel(str(large), convention="deep3dfacerecon"), model.image_size)
    name = f"standin_{args.large_vertices}"
    mafb[name] = {**mafb_stage(big, large, base, landmarks, valid, box, args.mafb_frames, args.rounds),
                  "standin_written_seconds": written}
    print(json.dumps({"mafb": name, **mafb[name]}), flush=True)
    del big
    shutil.rmtree(large, ignore_errors=True)

    e2e_size = int(args.e2e_overrides.get("gsmoothface", {}).get("taft", {}).get("image_size", model.image_size))
    known = {int(k[4:].split("_")[0]): v["gflop_per_frame"] for k, v in taft.items() if k.endswith("_batch1")}
    if e2e_size in known:
        taft_gflop = known[e2e_size]
    else:
        x, net = torch.zeros(1, 3, e2e_size, e2e_size), model.taft
        taft_gflop = gflop(lambda: net(x, x))
    e2e_frames = int(round(args.e2e_seconds * FPS))
    a2ep_gflop = sum(counter(e - s) for s, e in chunk_spans(e2e_frames, inference["max_seq_len"],
                                                           inference["chunk_overlap"])) / e2e_frames
    del model, a2ep, counter, blender
    gc.collect()
    peak.append(matmul_peak_gflops(size=args.peak_n))
    e2e_config = merge(merge({"face3d": {"bfm_folder": str(small)}}, RELEASED), args.e2e_overrides)
    e2e = {"first_dub": dub_run("gsmoothface", work, video, e2e_config, THREADS, flop_frames=args.flop_frames),
           "second_dub": dub_run("gsmoothface", work, video, e2e_config, THREADS, warm_dubs=1)}
    e2e["configuration"] = ("the released sizes (A2EP wav2vec2-base + feature_dim 1024, random; TAFT 64/256/3 "
                            f"layers at image_size {e2e_size}), infer_batch 1 on CPU, face3d.bfm_folder the "
                            "1,000-vertex stand-in, face3d.method fit with SHORT_FIT; the second dub follows an "
                            "untimed one of the same video (the target's coefficients kept)")
    e2e["network_gflop_per_frame_measured_apart"] = {"taft": round(taft_gflop, 3), "a2ep": round(a2ep_gflop, 3)}
    print(json.dumps({"end_to_end": e2e}), flush=True)
    videos = {seconds: head_video(work / f"rss{seconds:g}.mp4", seconds, base) for seconds in args.rss}
    memory = memory_series("gsmoothface", work, videos, merge({"face3d": {"bfm_folder": str(small)}}, CHEAP), THREADS)
    print(json.dumps({"peak_rss": memory}), flush=True)
    peak.append(matmul_peak_gflops(size=args.peak_n))
    best_peak = max(peak)
    # the shares against the run's best peak (stages measured before a later, higher peak are rescaled)
    rows = [*taft.values(), training["free_running"], training["teacher_forced"], *inference["runs"]]
    for row in rows:
        if "gflop_per_s" in row:
            row["share_of_matmul_peak"] = round(row["gflop_per_s"] / best_peak, 4)
    return {
        "benchmark": "gsmoothface_dubbing",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__, "transformers": transformers.__version__, "threads": THREADS,
        "numpy": np.__version__, "talkingface": getattr(talkingface, "__version__", "unknown"),
        "quick": bool(args.quick), "arguments": {k: v for k, v in vars(args).items() if k != "child"},
        "load_1min_before": [round(v, 2) for v in loads], "load_1min_at_end": round(os.getloadavg()[0], 2),
        "matmul_peak_gflops": [round(p, 1) for p in peak], "matmul_peak_gflops_best": round(best_peak, 1),
        "matmul_size": args.peak_n,
        "model": {"configuration": "build_model('gsmoothface') defaults, random weights (wav2vec2_fallback random)",
                  "parameters": parameters},
        "input": {"frame": [1280, 720], "fps": FPS, "e2e_seconds": args.e2e_seconds,
                  "video": "synthetic: skimage astronaut x2.5, rows 0:720, swaying 3 px, 220 Hz tone (its own audio)"},
        "a2ep_training": training,
        "a2ep_inference": inference,
        "taft": taft,
        "tracking": tracking,
        "mafb": mafb,
        "end_to_end": e2e,
        "peak_rss": {"configuration": CHEAP, **memory},
        "notes": NOTES,
    }


NOTES = ("random weights in the released sizes; torch on 2 threads; frames_per_s: frames / seconds of the timed calls "
         "after one warm-up call, best of --rounds rounds (A2EP inference: one call per length); GFLOP from "
         "torch.utils.flop_counter (convolutions and matrix products; the A2EP training step's forward and backward; "
         "A2EP inference counted on a meta-device copy, chunk by chunk); share_of_matmul_peak: GFLOP/s / the best "
         "fp32 matmul rate measured in the run (trainer_overhead.matmul_peak_gflops). MAFB has no FLOP ratio: the "
         "rasterizer's scatter_reduce, barycentric gathers and the morphology are memory-bound scatter/gather work. "
         "A2EP inference's cost per frame grows with the chunk length: the official loop decodes the whole prefix at "
         "every one of a chunk's n steps (~n²/2 decoder rows) and recomputes the cross-attention's keys and values of "
         "the chunk's n audio features each step (n² rows); wav2vec2_seconds: the encoder's forwards marked as a "
         "stage (talkingface.profiling.module_stage). End to end and peak RSS: talkingface benchmark's own "
         "measuring (benchmarks/dub_runs.py: generate in a child process, the stages the loop and GSmoothFace's "
         "hooks mark, exclusive seconds, peak RSS per stage from VmHWM, FLOPs of the first 8 frames in a second "
         "dub); other_busy_cores / other_cpu_cores: cores busy with other processes during the timing (/proc/stat "
         "less this process and its children); a stage with more than ~0.2 was disturbed; growth: the peak's "
         "increase per minute of "
         "video between the shortest and the longest run (the expressions are (T, 64) and the coefficients (T, 257) "
         "floats: a minute adds ~2 MB).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: reduced sizes and lengths, nothing quotable")
    parser.add_argument("--train-frames", type=int, default=100, help="A2EP's training window (official 100)")
    parser.add_argument("--lengths", type=float, nargs="*", default=[2.0, 10.0, 60.0],
                        help="seconds of audio for A2EP's inference")
    parser.add_argument("--taft-sizes", type=int, nargs="*", default=[256, 512], help="TAFT's image sizes")
    parser.add_argument("--batch", type=int, default=4, help="TAFT's batch besides 1 (at the first size)")
    parser.add_argument("--taft-frames", type=int, default=4, help="frames per TAFT timing")
    parser.add_argument("--mafb-frames", type=int, default=8, help="frames per MAFB timing")
    parser.add_argument("--large-vertices", type=int, default=BFM_VERTICES, help="the BFM-sized stand-in")
    parser.add_argument("--rounds", type=int, default=2, help="stage timings: best of this many rounds")
    parser.add_argument("--e2e-seconds", type=float, default=4.0, help="the end-to-end clip's length")
    parser.add_argument("--rss", type=float, nargs="*", default=[10.0, 60.0], help="video lengths of the memory runs")
    parser.add_argument("--peak-n", type=int, default=4096, help="the matmul peak's matrix size")
    parser.add_argument("--wait-load", type=float, default=0.7, help="wait for the 1-min load to fall below this")
    parser.add_argument("--wait-minutes", type=int, default=10, help="... for at most this many minutes")
    parser.add_argument("--out", "--output", dest="output", default=None,
                        help=f"the JSON file; default {OUTPUT} (--quick: nothing written)")
    parser.add_argument("--flop-frames", type=int, default=8, help="frames of the end-to-end FLOP count (0: none)")
    args = parser.parse_args()
    args.e2e_overrides = {}
    if args.quick:
        args.train_frames, args.lengths, args.taft_sizes, args.batch = 25, [2.0, 4.0], [128, 256], 2
        args.taft_frames, args.mafb_frames, args.large_vertices, args.rounds = 2, 2, 4000, 1
        args.e2e_seconds, args.rss, args.peak_n = 1.0, [1.0, 2.0], 2048
        args.e2e_overrides = {"gsmoothface": {"taft": {"image_size": 128}}}
    elif args.output is None:
        args.output = str(OUTPUT)
    run_and_write(run, args, "gsmoothface_dubbing_")


if __name__ == "__main__":
    main()
