"""VideoReTalking dubbing at 720p on 2 CPU threads: frames/s of each stage (ours and the official code on the same
networks, weights and inputs), end to end through ``generate``, and peak memory against video length. Writes
benchmarks/results/videoretalking_dubbing.json.

Random weights in the released layouts (timing only): ``build_model("videoretalking")`` (LNet 64/512/9/512, E-Net,
D-Net), GPEN-BFR-512, GFPGANv1.3, ParseNet and RetinaFace-R50 at their release sizes, ReconNet (ResNet-50).
Input: a synthetic 1280 x 720 talking head at 25 fps (scikit-image's astronaut, face ~300 px, swaying 3 px) with a
tone. Random RetinaFace weights find no face, so the detector runs its network on every image (its cost) and then
reports the known face (box and five points from the frame's dlib landmarks, mapped into the 256 crop for the
references): ``KnownFaceRetinaFace``; the same stand-in serves the official chain's two detectors. The random networks,
the known faces and the stand-in BFM's align_img template come from the plugin's ``timing.py`` (the end-to-end run
sets ``videoretalking.timing_networks``, as ``talkingface benchmark`` does).

Stages, per frame (docs/videoretalking.md, "Dubbing"): crop + landmarks (the loop's face tracking, dlib, decoding
included), ReconNet semantics (``Stabiliser.analyse``: decode, FFHQ crop, align_img, ReconNet in batches of 8),
D-Net (``Stabiliser.stabilised``, one frame per call as the loop calls it), GPEN reference enhancement
(``enhance_reference``: RetinaFace on the 256 reference, GPEN, ParseNet, warps), L-Net + E-Net (the loop's
generator at ``infer_batch`` 1 and 4), GFPGAN (``restore_frame``: RetinaFace on the 720p frame, GFPGAN, paste),
masks (ParseNet's mouth mask and ``face_blend_mask``: RetinaFace + ParseNet) and the two Laplacian blends
(``blend: native`` vs ``official``). The official side: the release's classes (imported from the mirror by
``reference_runners/videoretalking_official.py``, our state dicts loaded strictly) called as ``inference.py`` calls
them: D-Net, ReconNet, GPEN, GFPGAN, ParseNet one frame per call, E-Net (with its L-Net) 16 per call, and the chain
functions themselves: ``FaceEnhancement.process`` (step 5), ``GFPGANer.enhance`` and the rest of step 6's loop body
(mouth mask, the 512 whole-frame blends, the final ``enhancer.process``), executed from ``inference.py``'s own lines.
FLOPs: ``torch.utils.flop_counter`` (convolutions and matrix products) of one frame; GFLOP/s = frames/s x GFLOP per
frame; share = GFLOP/s / the best fp32 matmul rate measured in the same run (``trainer_overhead.matmul_peak_gflops``).
Each stage is timed in ``--rounds`` rounds (ours, then the official code, in each; the first round's warm-up call is
the FLOP-counted one) and its best round is kept.

    .venv-test/bin/python benchmarks/videoretalking_dubbing.py            # the default run (~14 min on 2 cores)
    .venv-test/bin/python benchmarks/videoretalking_dubbing.py --quick    # a smoke run (~6 min), not for quoting

The run waits (up to 10 minutes) for the 1-minute load average to fall below ``--wait-load`` (0.7) first. End to end
and peak RSS are measured by ``talkingface benchmark``'s own code (``dub_runs``: ``generate`` in a child process, the
stages the loop and the hooks mark, VmHWM per stage): the whole release dub on ``--e2e-seconds`` of 720p, and a
10 s and a 60 s 720p video (``--rss``, twice: ``--rss-repeats``) with the cheap configuration ``CHEAP``; the
release's memory is counted from ``inference.py`` (``official_memory_estimate``) and emulated with its own data
structures on the 10 s clip.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "reference_runners"))
from dub_runs import dub_run, memory_series  # noqa: E402
from talkingface.profiling import StageRecorder, module_stage  # noqa: E402
from process_memory import peak_rss_mb  # noqa: E402
from trainer_overhead import matmul_peak_gflops  # noqa: E402
from talkingface.benchmark import video as synthetic  # noqa: E402
from talkingface.benchmark.machine import cpu_model  # noqa: E402,F401  (imported from here by the other benchmarks)
from talkingface.io_utils import atomic_write_json  # noqa: E402
from talkingface.models.videoretalking.timing import (enhancement, enhancement_networks, faces_for,  # noqa: E402
                                                      standin_bfm, timing_stabiliser)

OUTPUT = HERE / "results" / "videoretalking_dubbing.json"
THREADS = 2
FPS = 25
WIDTH, HEIGHT = 1280, 720
OFFICIAL_LNET_BATCH = 16  # inference.py --LNet_batch_size default
ANCHOR = {"source": "https://github.com/OpenTalker/video-retalking/issues/22",
          "report": "Tesla T4 16 GB, 832 x 960 (w x h) video, 8 s of video generated in 390 s in total; the reporter "
                    "adds that step 6 (lip synthesis and enhancement) takes most of it",
          "frames_per_s_if_25fps": round(8 * 25 / 390, 3),
          "note": "frame rate not stated; 25 fps assumed (200 frames); a GPU with the release's CUDA ops, so not "
                  "comparable with these CPU numbers except as the scale of the work per frame"}
# the cheap configuration of the memory runs (tests/models/videoretalking/test_model.py's TINY)
CHEAP = {"lnet": {"base_nc": 8, "max_nc": 64, "num_res_blocks": 1, "descriptor_nc": 32}, "enet": False,
         "reference": "frame", "enhance": "none", "vgg19_weights": "/nonexistent/vgg19.pth"}
# the end-to-end run with everything on: the release's defaults with the plugin's random timing networks


# ---- the synthetic 720p talking head ------------------------------------------------------------------------------
def head_frame() -> np.ndarray:
    """(720, 1280, 3) uint8: ``talkingface.benchmark.video.head_frame`` at 720p (the face ~320 px high at x ~575)."""
    return synthetic.head_frame(WIDTH, HEIGHT)


def head_video(path: Path, seconds: float, base: np.ndarray | None = None) -> Path:
    """``seconds`` of ``talkingface benchmark``'s synthetic talking head at 720p (``base``: that frame, unused)."""
    return synthetic.talking_head_video(path, (WIDTH, HEIGHT), seconds)


# ---- building -----------------------------------------------------------------------------------------------------
def build_model(**options):
    import talkingface

    torch.manual_seed(0)
    return talkingface.build_model("videoretalking", {"progress": False, "videoretalking": options}).eval()


def track(video: Path, config) -> tuple[np.ndarray, np.ndarray, float]:
    """The loop's face tracking (dlib by default): landmarks, valid and seconds."""
    from talkingface.dubbing.faces import track_landmarks

    start = time.perf_counter()
    landmarks, valid = track_landmarks(video, FPS, None, config, None, 0, False, "videoretalking")
    return landmarks, valid, time.perf_counter() - start


# ---- timing -------------------------------------------------------------------------------------------------------
class NetTimer:
    """The named networks' forwards marked as stages (``talkingface.profiling.module_stage``, the measuring of
    ``talkingface benchmark``) until ``close``; ``measure`` records them with a ``StageRecorder`` (exclusive seconds: a
    network called inside another's forward is not counted twice)."""

    def __init__(self, **modules: nn.Module):
        self.names = tuple(modules)
        self._marks = contextlib.ExitStack()
        for name, module in modules.items():
            self._marks.enter_context(module_stage(module, name))

    def close(self) -> None:
        self._marks.close()


def gflop(fn: Callable[[], Any]) -> float:
    """GFLOP of one call of ``fn`` (which also serves as the warm-up)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


@dataclass
class Stage:
    """One timed stage: ``calls`` (each ``frames_per_call`` frames), the networks' ``timer``, the warm-up call
    (``warm``, default the first call; ``warm_frames`` frames) and its GFLOP per frame once counted."""

    side: str
    name: str
    calls: list[Callable[[], Any]]
    frames_per_call: int = 1
    timer: NetTimer | None = None
    warm: Callable[[], Any] | None = None
    warm_frames: int | None = None
    warmup: bool = True
    flops: float = 0.0


def measure(stage: Stage, first: bool) -> dict:
    """In the first round, run the warm-up call under the FLOP counter (GFLOP per frame); then time every call:
    frames/s and, with a timer, the seconds per frame inside each timed network."""
    if first and stage.warmup:
        stage.flops = gflop(stage.warm or stage.calls[0]) / (stage.warm_frames or stage.frames_per_call)
    gc.collect()
    with torch.no_grad(), StageRecorder(memory=False) as recorder:
        start = time.perf_counter()
        for call in stage.calls:
            call()
        seconds = time.perf_counter() - start
    frames = len(stage.calls) * stage.frames_per_call
    row = {"frames": frames, "seconds": round(seconds, 3), "frames_per_s": round(frames / seconds, 5),
           "gflop_per_frame": round(stage.flops, 2)}
    if stage.timer is not None:
        row["network_seconds_per_frame"] = {name: round(recorder.stats[name].seconds / frames, 4)
                                            for name in stage.timer.names if name in recorder.stats}
    return row


def best(rows: list[dict]) -> dict:
    """The row with the most frames/s over rounds (a shared CPU's speed drifts), with every round's frames/s."""
    top = dict(max(rows, key=lambda r: r["frames_per_s"]))
    if len(rows) > 1:
        top["frames_per_s_rounds"] = [r["frames_per_s"] for r in rows]
    return top


# ---- our stages ---------------------------------------------------------------------------------------------------
def our_stages(ctx: dict, frames: int, batch: int) -> list[Stage]:
    """Each of our stages on ``frames`` frames of the 720p clip (see the module docstring)."""
    from talkingface.dubbing.paste import paste_feathered
    from talkingface.face.parsenet import mouth_mask
    from talkingface.media import iter_frames
    from talkingface.models.dinet.data.crops import crop_face
    from talkingface.models.videoretalking.data import lower_half_masked, to_bgr_tensor
    from talkingface.models.videoretalking.dubbing import Synthesis, VideoReTalkingDubbing
    from talkingface.models.videoretalking.enhance import enhance_reference, face_blend_mask, restore_frame
    from talkingface.models.videoretalking.stabilise import paste_stabilised

    model, stab, nets, enh = ctx["model"], ctx["stabiliser"], ctx["nets"], ctx["enhancement"]
    state, clip, box = ctx["state"], ctx["frames"][:frames], ctx["box"]
    top, bottom, left, right = box
    timer = NetTimer(dnet=model.dnet, recon=stab.recon, gpen=nets["gpen"], gfpgan=nets["gfpgan"],
                     parsenet=nets["parsenet"], retinaface=nets["retinaface"].network, enet=model.enet,
                     lnet=model.lnet)
    hooks = VideoReTalkingDubbing(model, reference="stabilised", enhance="none", blend="native")
    synthesis = Synthesis(model.lnet, model.enet, model.lnet_size).eval()
    stabilised = [stab.stabilised(state, frame, i) for i, frame in enumerate(clip)]
    references = [np.ascontiguousarray(face[..., ::-1]) for face in stabilised]  # BGR, as the release's step 5
    size = model.lnet_size * 4
    face_in = [torch.rand(batch, 6, size, size, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    mel_in = [torch.randn(batch, 1, 80, 16, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    rng = np.random.default_rng(0)
    generated = [rng.integers(0, 256, (bottom - top, right - left, 3), dtype=np.uint8) for _ in clip]
    pasted = [paste_feathered(frame, face, box, np.ones((bottom - top, right - left), np.float32))
              for frame, face in zip(clip, generated)]
    pasted_bgr = [np.ascontiguousarray(p[..., ::-1]) for p in pasted]
    restored = pasted  # what the masks and blends read of GFPGAN's frame (their cost does not depend on it)
    ctx.update(references=references)
    mouths = [np.zeros(clip[0].shape[:2], np.float32) for _ in clip]
    face_masks: dict[int, np.ndarray] = {}

    def masks(k: int) -> None:  # VideoReTalkingDubbing.paste: ParseNet's mouth mask, then the face mask
        mouths[k][top:bottom, left:right] = mouth_mask(nets["parsenet"], restored[k][top:bottom, left:right],
                                                       channels="rgb")
        mask = face_blend_mask(pasted[k][..., ::-1].copy(), enh)
        box_mask = np.zeros(clip[0].shape[:2], np.float32)
        box_mask[top:max(bottom - 5, top), left:right] = 1.0
        face_masks[k] = mask * box_mask

    def blends(k: int, mode: str) -> None:  # VideoReTalkingDubbing.paste's two _blend calls
        hooks.blend = mode
        mouthed = hooks._blend(pasted[k], restored[k], mouths[k], box, 10)
        hooks._blend(clip[k], mouthed, face_masks[k], box, 6)

    def crop_rest(k: int) -> torch.Tensor:  # the crop hook less D-Net and GPEN: paste back, the two 384 crops
        reference = to_bgr_tensor(crop_face(paste_stabilised(clip[k], stabilised[k], state), box, (size, size)))
        original = to_bgr_tensor(crop_face(clip[k], box, (size, size)))
        return torch.cat([lower_half_masked(original), reference])

    def analyse(count: int | None = None):
        frames_in = iter_frames(ctx["track_video"], fps=FPS)
        if count is not None:
            frames_in = itertools.islice(frames_in, count)
        return stab.analyse(frames_in, ctx["landmarks"][:count], ctx["valid"][:count], ctx["frame_size"])

    ctx["timers"].append(timer)
    each = range(frames)
    stages = [
        Stage("ours", "crop_and_landmarks", [lambda: track(ctx["track_video"], model.config)], len(ctx["landmarks"]),
              warmup=False),
        Stage("ours", "reconnet_semantics", [analyse], len(ctx["landmarks"]), timer, lambda: analyse(8), 8),
        Stage("ours", "dnet_stabilised", [lambda k=k: stab.stabilised(state, clip[k], k) for k in each], 1, timer),
        Stage("ours", "gpen_reference", [lambda k=k: enhance_reference(references[k], enh) for k in each], 1, timer),
        Stage("ours", "crop_rest", [lambda k=k: crop_rest(k) for k in each]),
        *(Stage("ours", f"lnet_enet_batch{b}", [lambda k=k, b=b: synthesis(mel_in[k % 2][:b], face_in[k % 2][:b])
                                                 for k in range(max(frames // b, 1))], b, timer,
                lambda: synthesis(mel_in[0][:1], face_in[0][:1]), 1) for b in sorted({1, batch})),
        Stage("ours", "gfpgan", [lambda k=k: restore_frame(pasted_bgr[k], enh) for k in each], 1, timer),
        Stage("ours", "masks", [lambda k=k: masks(k) for k in each], 1, timer),
        *(Stage("ours", f"blend_{mode}", [lambda k=k, m=mode: blends(k, m) for k in each])
          for mode in ("native", "official")),
    ]
    return stages


# ---- the official stages ------------------------------------------------------------------------------------------
def official_stages(ctx: dict, frames: int, enet_batch: int) -> tuple[list[Stage], dict]:
    """The release's networks and chain on the same inputs (see the module docstring): the stages, and what is
    known of the official code (its commit; ``chain_skipped`` where the chain cannot run)."""
    import videoretalking_official as vo

    from talkingface.face.retinaface import RetinaFaceDetector
    from talkingface.models.videoretalking.semantics import driving_batch
    from talkingface.models.videoretalking.stabilise import dnet_image, face_crop

    model, nets, state, clip, box = ctx["model"], ctx["nets"], ctx["state"], ctx["frames"][:frames], ctx["box"]
    files, commit = vo.export()
    ctx["cleanup"].append(files)
    out: dict[str, Any] = {"commit": commit}
    ns = vo.import_networks(files)
    official = vo.official_networks(ns, {"dnet": model.dnet, "lnet": model.lnet, "enet": model.enet,
                                         "recon": ctx["stabiliser"].recon, **nets})

    # step 3 inputs: the same 256 crops and driving windows as ours
    sources = [dnet_image(face_crop(frame, state.crop)[None]) for frame in clip]
    driving = [driving_batch(state.semantics, [k], ctx["stabiliser"].template) for k in range(frames)]
    recon_in = [torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(k)) for k in range(frames)]
    size = model.lnet_size * 4
    img_batch = torch.rand(enet_batch, 6, size, size, generator=torch.Generator().manual_seed(5))
    mel_batch = torch.randn(enet_batch, 1, 80, 16, generator=torch.Generator().manual_seed(5))
    timer = NetTimer(**{k: v for k, v in official.items() if k in ("dnet", "recon", "enet")})

    def dnet_step(k: int) -> np.ndarray:  # inference.py step 3: D_Net, then its uint8 line
        output = official["dnet"](sources[k], driving[k])
        return np.uint8((output["fake_image"].squeeze(0).permute(1, 2, 0).cpu().clamp_(-1, 1).numpy() + 1) / 2. * 255)

    def enet_call(batch: int) -> None:  # step 6: pred, low_res = model(mel_batch, img_batch, reference)
        incomplete, reference = torch.split(img_batch[:batch], 3, dim=1)
        pred, low_res = official["enet"](mel_batch[:batch], img_batch[:batch], reference)
        torch.clamp(pred, 0, 1)

    # the enhancement chain
    chain = None
    try:
        detector = RetinaFaceDetector.from_network(nets["retinaface"])
        chain = vo.import_chain(files, detector, vo.facexlib_export())
        ctx["cleanup"].append(chain)
        enhancer, restorer = vo.build_chain(chain, ctx["work"] / "official_weights", nets["gpen"], nets["gfpgan"],
                                            nets["parsenet"])
    except Exception as exc:  # noqa: BLE001 - reported in the JSON
        out["chain_skipped"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps({"official_chain_skipped": out["chain_skipped"]}), flush=True)
        chain = None
    if chain is not None:
        cv2 = chain.cv2
        chain_timer = NetTimer(gpen=enhancer.facegan.model, parsenet=enhancer.faceparser.faceparse,
                               gfpgan=restorer.gfpgan, retinaface=nets["retinaface"].network)
        top, bottom, left, right = box
        c = (top, bottom, left, right)  # inference.py's coords (y1, y2, x1, x2)
        rng = np.random.default_rng(0)
        preds = [rng.uniform(0, 255, (size, size, 3)).astype(np.float32) for _ in clip]  # E-Net's output x 255
        xfs = [np.ascontiguousarray(frame[..., ::-1]) for frame in clip]  # the release's BGR frames
        step6 = compile(chain.step6, "inference.py (step 6 loop body)", "exec")
        ffs = []
        for k in range(frames):  # the body's first lines: the generated face pasted into the frame (BGR)
            y1, y2, x1, x2 = c
            ff = xfs[k].copy()
            ff[y1:y2, x1:x2] = cv2.resize(preds[k].astype(np.uint8), (x2 - x1, y2 - y1))
            ffs.append(ff)
        restored_once: dict[int, tuple] = {}
        scopes: dict[int, dict] = {}

        class CachedRestorer:  # restorer.enhance answered with the result of the timed GFPGAN stage
            def __init__(self, k):
                self.k = k

            def enhance(self, ff, **kwargs):
                if self.k not in restored_once:
                    restored_once[self.k] = restorer.enhance(ff, **kwargs)
                return restored_once[self.k]

        def gfpgan_step(k: int) -> None:  # step 6: restorer.enhance(ff, ...)
            restored_once[k] = restorer.enhance(ffs[k], has_aligned=False, only_center_face=True, paste_back=True)

        def body(k: int) -> None:  # the rest of step 6's body, from inference.py's own lines
            scope = {"np": np, "cv2": cv2, "p": preds[k], "xf": xfs[k], "c": c, "restorer": CachedRestorer(k),
                     "enhancer": enhancer, "Laplacian_Pyramid_Blending_with_mask": chain.blend}
            exec(step6, scope)
            scopes[k] = scope

        def official_blends(k: int) -> None:
            """The step-6 Laplacian blends as the release runs them: the mouth (restored over ff at 512, 10 levels)
            and enhancer.process's possion_blending branch (faces over xf at 512, 6 levels), resizes included."""
            s = scopes[k]
            restored_img, ff, full_mask = [cv2.resize(x, (512, 512)) for x in
                                           (restored_once[k][2], ffs[k], np.float32(s["mouse_mask"]))]
            img = chain.blend(restored_img, ff, full_mask[:, :, 0], 10)
            np.uint8(cv2.resize(np.clip(img, 0, 255), (WIDTH, HEIGHT)))
            mask = np.zeros((HEIGHT, WIDTH, 1), np.float64)
            mask[top:bottom - 5, left:right] = 1
            full_img, ori_img, full = [cv2.resize(x, (512, 512)) for x in (s["pp"], xfs[k], np.float32(mask))]
            img = chain.blend(full_img, ori_img, full, 6)
            np.uint8(cv2.resize(np.clip(img, 0, 255), (WIDTH, HEIGHT)))

    ctx["timers"].append(timer)
    each = range(frames)
    stages = [
        Stage("official", "dnet", [lambda k=k: dnet_step(k) for k in each], 1, timer),
        Stage("official", "reconnet", [lambda k=k: official["recon"](recon_in[k]) for k in each], 1, timer),
        Stage("official", f"enet_batch{enet_batch}", [lambda: enet_call(enet_batch)], enet_batch, timer,
              lambda: enet_call(1), 1),
    ]
    if chain is not None:
        ctx["timers"].append(chain_timer)
        references = ctx["references"]
        stages += [
            Stage("official", "gpen_reference", [lambda k=k: enhancer.process(references[k], references[k],
                                                                              face_enhance=True,
                                                                              possion_blending=False)
                                                 for k in each], 1, chain_timer),
            Stage("official", "gfpgan", [lambda k=k: gfpgan_step(k) for k in each], 1, chain_timer),
            Stage("official", "masks_and_blends", [lambda k=k: body(k) for k in each], 1, chain_timer),
            Stage("official", "blend", [lambda k=k: official_blends(k) for k in each]),
        ]
    return stages, out


# ---- end to end and memory (child processes) ----------------------------------------------------------------------
def official_memory_child(spec: dict) -> dict:
    """The release's per-frame lists of ``inference.py`` for a ``spec['seconds']`` 720p clip, built with the same
    operations (OpenCV decode, ``cvtColor`` copies, the crop as slices, PIL images, ``ff.copy()`` kept alive by the
    reference slices): the networks replaced by copies of their inputs' sizes. Peak RSS before and after."""
    import videoretalking_official as vo
    from PIL import Image

    cv2 = vo.opencv()
    before = peak_rss_mb()
    crop, quad, c = spec["crop"], spec["quad"], spec["box"]
    capture = cv2.VideoCapture(spec["video"])
    full_frames = []
    while True:  # step 0
        ok, frame = capture.read()
        if not ok:
            break
        full_frames.append(frame)
    capture.release()
    full_frames_rgb = [cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) for frame in full_frames]
    clx, cly, crx, cry = crop
    lx, ly, rx, ry = quad
    for i in range(len(full_frames_rgb)):  # Croper.crop: views of the RGB frames
        full_frames_rgb[i] = full_frames_rgb[i][cly:cry, clx:crx][ly:ry, lx:rx]
    frames_pil = [Image.fromarray(cv2.resize(frame, (256, 256))) for frame in full_frames_rgb]
    imgs = [cv2.cvtColor(np.array(pil), cv2.COLOR_RGB2BGR) for pil in frames_pil]  # step 3 (D-Net's output size)
    imgs_enhanced = [img.copy() for img in imgs]  # step 5 (enhancer.process returns new arrays)
    frames = imgs_enhanced.copy()  # datagen
    fr_pil = [Image.fromarray(frame) for frame in frames]
    crops = [pil.resize((256, 256)) for pil in fr_pil]  # crop_faces: one new 256 PIL image per frame
    y1, y2, x1, x2 = c
    face_det_results = [[image[y1:y2, x1:x2], (y1, y2, x1, x2)] for image in full_frames]  # views
    refs = []
    for full_frame, crop_pil in zip(full_frames, crops):
        ff = full_frame.copy()
        refs.append(ff[y1:y2, x1:x2])  # a view: keeps every ff alive
    gc.collect()
    after = peak_rss_mb()
    alive = (full_frames, full_frames_rgb, frames_pil, imgs, imgs_enhanced, fr_pil, crops, face_det_results, refs)
    return {"frames": len(full_frames), "rss_mb_before": before, "peak_rss_mb": after,
            "mb_per_frame": round((after - before) / max(len(full_frames), 1), 3), "lists": len(alive)}


def child_run(spec: dict, kind: str = "dub", env: dict | None = None) -> dict:
    result = subprocess.run([sys.executable, __file__, f"--{kind}-child", json.dumps(spec)], capture_output=True,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": str(THREADS), **(env or {})})
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def official_memory_estimate(frame_size: tuple[int, int], frames: int) -> dict:
    """What ``inference.py`` holds at once during step 6 (every list below is alive until the end of ``main`` or of
    ``datagen``, whose locals live while step 6 iterates it), in bytes per frame."""
    width, height = frame_size
    full = width * height * 3
    small = 256 * 256 * 3
    items = {
        "full_frames (BGR, step 0)": full,
        "full_frames_RGB (cvtColor copies; Croper.crop keeps slices, so the whole frames stay)": full,
        "refs in datagen (slices of ff = full_frame.copy(): each keeps its whole copy)": full,
        "frames_pil (256 crops, PIL)": small,
        "imgs (stabilised 256 faces, step 3)": small,
        "imgs_enhanced (step 5)": small,
        "fr_pil in datagen (PIL copies of imgs_enhanced)": small,
        "crops in datagen (crop_faces: 256 PIL images)": small,
        "mel chunks": 0,
    }
    per_frame = sum(items.values())
    return {"frames": frames, "frame_size": [width, height], "bytes_per_frame": items,
            "mb_per_frame": round(per_frame / 2**20, 3), "estimate_mb": round(per_frame * frames / 2**20, 1),
            "estimate_gb": round(per_frame * frames / 2**30, 2),
            "not_counted": "face_det_results (slices of full_frames: no copy), lm, semantics, the 16-frame batches, "
                           "np.save's temporary array of imgs (256 x 256 x 3 x N, during step 3 only), the networks "
                           "(network_weights_mb_fp32), torch's and OpenCV's working memory"}


# ---- the run ------------------------------------------------------------------------------------------------------
def _side(stage: dict | None, peak: float, parts: tuple[dict, ...] = ()) -> dict | None:
    """frames/s, GFLOP per frame, GFLOP/s and share of the matmul peak of a stage (or of stages run one after the
    other: ``parts``)."""
    stages = [st for st in ((stage,) if stage is not None else parts) if isinstance(st, dict) and "frames_per_s" in st]
    if not stages or len(stages) != max(len(parts), 1):
        return None
    seconds = sum(1 / st["frames_per_s"] for st in stages)
    flops = sum(st.get("gflop_per_frame", 0.0) for st in stages)
    row = {"frames_per_s": round(1 / seconds, 5), "seconds_per_frame": round(seconds, 3)}
    if flops:
        row.update(gflop_per_frame=round(flops, 2), gflops=round(flops / seconds, 1),
                   share_of_peak=round(flops / seconds / peak, 3))
    return row


def stage_table(ours: dict, official: dict, peak: float) -> dict:
    """One row per stage: ours and the official code's frames/s, GFLOP per frame, GFLOP/s, share of the matmul
    peak, and ours / official frames/s."""
    enet = next((k for k in official if k.startswith("enet_batch")), None)
    batches = sorted((k for k in ours if k.startswith("lnet_enet_batch")), key=lambda k: int(k[15:]))
    recon = ours.get("reconnet_semantics", {}).get("network_seconds_per_frame", {}).get("recon")
    rows = {
        "crop_and_landmarks": (ours.get("crop_and_landmarks"), None, "ours: the loop's dlib face tracking with "
                               "decoding; official: not measured (not_measured)"),
        "reconnet_semantics": (ours.get("reconnet_semantics"), official.get("reconnet"),
                               "ours: Stabiliser.analyse (decode, FFHQ crop, align_img, ReconNet batch 8); "
                               "official: ReconNet alone, batch 1"),
        "reconnet_network": ({"frames_per_s": 1 / recon,
                              "gflop_per_frame": ours["reconnet_semantics"]["gflop_per_frame"]} if recon else None,
                             official.get("reconnet"), "ReconNet alone: ours batch 8 inside analyse (forward hook), "
                                                       "official batch 1"),
        "dnet": (ours.get("dnet_stabilised"), official.get("dnet"), "one frame per call; ours with the 256 crop "
                                                                    "from the frame and the driving window"),
        "gpen_reference": (ours.get("gpen_reference"), official.get("gpen_reference"),
                           "step 5 on the stabilised 256 face: RetinaFace, GPEN, ParseNet, warps, blends"),
        "crop_rest": (ours.get("crop_rest"), None, "the crop hook less D-Net and GPEN (paste back, two 384 crops); "
                                                   "official STIT paste not measured"),
        **{f"lnet_enet_{key[10:]}": (ours.get(key), official.get(enet) if enet else None,
                                     f"ours {key[10:].replace('batch', 'batch ')}, official {enet or '-'}")
           for key in batches},
        "gfpgan": (ours.get("gfpgan"), official.get("gfpgan"), "step 6: RetinaFace on the 720p frame, alignment, "
                                                              "GFPGAN, paste back"),
        "masks_and_blends": ((None, (ours.get("masks"), ours.get("blend_native"))), official.get("masks_and_blends"),
                             "the rest of step 6: ParseNet mouth mask, RetinaFace + ParseNet face mask, the two "
                             "Laplacian blends (ours native; official at 512, whole frame)"),
        "blends_native": (ours.get("blend_native"), official.get("blend"), "the two blends alone: ours at the "
                                                                           "frame's resolution in the face box"),
        "blends_official_mode": (ours.get("blend_official"), official.get("blend"),
                                 "ours blend: official (NumPy, whole frame at 512) vs the release's OpenCV"),
    }
    table = {}
    for name, (mine, theirs, what) in rows.items():
        row: dict[str, Any] = {"what": what}
        ours_row = _side(None, peak, mine[1]) if isinstance(mine, tuple) else _side(mine, peak)
        theirs_row = _side(theirs, peak) if theirs is not None else None
        if ours_row:
            row["ours"] = ours_row
        if theirs_row:
            row["official"] = theirs_row
        if ours_row and theirs_row:
            row["ours_over_official"] = round(ours_row["frames_per_s"] / theirs_row["frames_per_s"], 3)
        table[name] = row
    per_frame = [table[k]["ours"]["seconds_per_frame"] for k in
                 ("crop_and_landmarks", "reconnet_semantics", "dnet", "gpen_reference", "crop_rest",
                  "lnet_enet_batch1", "gfpgan", "masks_and_blends") if "ours" in table.get(k, {})]
    table["sum_of_stages_ours"] = {"seconds_per_frame": round(sum(per_frame), 2),
                                   "frames_per_s": round(1 / sum(per_frame), 5) if per_frame else None,
                                   "what": "crop + landmarks, ReconNet, D-Net, GPEN, crop rest, L-Net + E-Net "
                                           "batch 1, GFPGAN, masks + native blends"}
    return table


def wait_for_quiet(limit: float, tries: int, pause: float) -> list[float]:
    loads = []
    for _ in range(tries):
        loads.append(os.getloadavg()[0])
        if loads[-1] < limit:
            break
        print(f"load {loads[-1]:.2f} >= {limit}: waiting {pause:.0f} s", flush=True)
        time.sleep(pause)
    return loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 frame per stage, short clips")
    parser.add_argument("--frames", type=int, default=2, help="frames per stage timing")
    parser.add_argument("--rounds", type=int, default=2, help="stage timings: best of this many rounds (ours then "
                                                              "the official code in each)")
    parser.add_argument("--batch", type=int, default=4, help="our L-Net + E-Net batch besides 1")
    parser.add_argument("--enet-batch", type=int, default=OFFICIAL_LNET_BATCH, help="the official E-Net batch")
    parser.add_argument("--track-seconds", type=float, default=2.0, help="clip length of the tracking / ReconNet "
                                                                         "stages")
    parser.add_argument("--e2e-seconds", type=float, default=0.2, help="video length of the end-to-end run with "
                                                                       "everything on")
    parser.add_argument("--rss", type=float, nargs="*", default=[10.0, 60.0], help="video lengths of the memory "
                                                                                  "runs (cheap configuration)")
    parser.add_argument("--rss-repeats", type=int, default=2, help="each memory run this many times")
    parser.add_argument("--no-official", action="store_true")
    parser.add_argument("--wait-load", type=float, default=0.7, help="wait for the 1-min load to fall below this")
    parser.add_argument("--output", default=str(OUTPUT))
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(official_memory_child(json.loads(args.memory_child))))
        return
    if args.quick:
        args.frames, args.rounds, args.batch, args.enet_batch = 1, 1, 2, 2
        args.track_seconds, args.e2e_seconds, args.rss, args.rss_repeats = 0.4, 0.2, [2.0, 4.0], 1
    torch.set_num_threads(THREADS)
    loads = wait_for_quiet(args.wait_load, 10, 60)
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="videoretalking_dubbing_"))
    ctx: dict[str, Any] = {"work": work, "cleanup": [work]}
    try:
        result = run(args, ctx, loads)
    finally:
        for item in ctx["cleanup"]:
            if isinstance(item, Path):
                shutil.rmtree(item, ignore_errors=True)
    result["wall_seconds"] = round(time.perf_counter() - began, 1)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.output), result)
    print(json.dumps(result, indent=2))


def run(args, ctx: dict, loads: list[float]) -> dict:
    from talkingface.media import iter_frames
    from talkingface.models.videoretalking.data import face_box

    work = ctx["work"]
    peak = [matmul_peak_gflops()]
    base = head_frame()
    clip = head_video(work / f"track{args.track_seconds:g}.mp4", args.track_seconds, base)
    model = build_model()
    landmarks, valid, _ = track(clip, model.config)
    count = len(landmarks)
    frames = [f for _, f in zip(range(max(args.frames, 1)), iter_frames(clip, fps=FPS))]
    frame_size = (WIDTH, HEIGHT)
    faces = faces_for(landmarks[0], frame_size)
    nets = enhancement_networks(faces)
    stab = timing_stabiliser(model.dnet, standin_bfm(work / "bfm"))
    state = stab.analyse(iter_frames(clip, fps=FPS), landmarks, valid, frame_size)
    window = np.clip(np.arange(-2, 3), 0, count - 1)
    box = face_box(landmarks, valid, window, (HEIGHT, WIDTH), [float(p) for p in model.options["pads"]])
    ctx.update(model=model, nets=nets, enhancement=enhancement(nets), stabiliser=stab, state=state, frames=frames,
               box=box, landmarks=landmarks, valid=valid, frame_size=frame_size, track_video=clip, timers=[])
    stages = our_stages(ctx, args.frames, args.batch)
    official_info: dict[str, Any] = {}
    if not args.no_official:
        try:
            more, official_info = official_stages(ctx, args.frames, args.enet_batch)
            stages += more
        except Exception as exc:  # noqa: BLE001 - reported in the JSON
            official_info = {"skipped": f"{type(exc).__name__}: {exc}"}
            print(json.dumps({"official_skipped": official_info["skipped"]}), flush=True)
    rows: dict[str, dict[str, list[dict]]] = {"ours": {}, "official": {}}
    for round_index in range(args.rounds):  # ours, then the official code, in each round
        for stage in stages:
            row = measure(stage, round_index == 0)
            rows[stage.side].setdefault(stage.name, []).append(row)
            print(json.dumps({stage.side: stage.name, "round": round_index, **row}), flush=True)
        peak.append(matmul_peak_gflops())
    for timer in ctx["timers"]:
        timer.close()
    ours = {name: best(group) for name, group in rows["ours"].items()}
    ours["crop_and_landmarks"]["backend"] = ("dlib (HOG on a copy shrunk to 640 px, detect every 5th frame, 68-point "
                                             "predictor), the backend's construction and the decoding included")
    official = {**official_info, **{name: best(group) for name, group in rows["official"].items()}}
    peak.append(matmul_peak_gflops())
    e2e_video = head_video(work / f"e2e{args.e2e_seconds:g}.mp4", args.e2e_seconds, base)
    e2e = dub_run("videoretalking", work, e2e_video, {}, THREADS)
    e2e.update(configuration="talkingface benchmark's offline settings (VideoReTalking.benchmark_config): reference "
                             "stabilised (ReconNet + D-Net), GPEN reference enhancement, E-Net around the L-Net "
                             "(infer_batch 1 on CPU), GFPGAN, ParseNet masks, native blends; "
                             "videoretalking.timing_networks: the random networks of the plugin's timing.py, "
                             "RetinaFace reporting each frame's tracked face")
    print(json.dumps({"end_to_end": e2e}), flush=True)
    videos = {seconds: head_video(work / f"rss{seconds:g}.mp4", seconds, base) for seconds in args.rss}
    memory = [{"repeat": repeat, **memory_series("videoretalking", work, videos, {"videoretalking": CHEAP}, THREADS)}
              for repeat in range(args.rss_repeats)]
    print(json.dumps({"peak_rss": memory}), flush=True)
    parameters = sum(p.numel() for net in (model.lnet, model.enet, model.dnet, stab.recon, *nets.values())
                     for p in net.parameters())
    official_memory: dict[str, Any] = {"estimate_one_minute": official_memory_estimate(frame_size, 60 * FPS),
                                       "network_parameters": parameters,
                                       "network_weights_mb_fp32": round(parameters * 4 / 2**20, 1),
                                       "networks": "L-Net, E-Net, D-Net, ReconNet, GPEN, GFPGAN, ParseNet, "
                                                   "RetinaFace (the release also loads FAN, S3FD and dlib's "
                                                   "predictor; ours loads dlib's)"}
    try:
        lx, ly, rx, ry = (int(v) for v in state.crop.quad)
        video = head_video(work / f"rss{args.rss[0]:g}.mp4", args.rss[0], base)
        row = child_run({"video": str(video), "crop": [int(v) for v in state.crop.crop], "quad": [lx, ly, rx, ry],
                         "box": [int(v) for v in box]}, "memory")
        row["extrapolated_one_minute_mb"] = round(row["mb_per_frame"] * 60 * FPS, 1)
        official_memory["emulated_short_clip"] = row
    except Exception as exc:  # noqa: BLE001
        official_memory["emulated_short_clip"] = {"skipped": f"{type(exc).__name__}: {str(exc)[-500:]}"}
    print(json.dumps({"official_memory": official_memory}), flush=True)
    peak.append(matmul_peak_gflops())
    best_peak = max(peak)
    summary = stage_table(ours, official, best_peak)
    import talkingface

    return {
        "benchmark": "videoretalking_dubbing",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__, "threads": THREADS, "numpy": np.__version__,
        "talkingface": getattr(talkingface, "__version__", "unknown"),
        "quick": bool(args.quick), "arguments": {k: v for k, v in vars(args).items() if not k.endswith("child")},
        "load_1min_before": loads, "load_1min_at_end": os.getloadavg()[0],
        "matmul_peak_gflops": [round(p, 1) for p in peak],
        "input": {"frame": [WIDTH, HEIGHT], "fps": FPS, "face_box_yyxx": [int(v) for v in box],
                  "video": "synthetic: skimage astronaut x2.5, rows 0:720, swaying 3 px, 220 Hz tone"},
        "stages": {"ours": ours, "official": official},
        "table": summary,
        "end_to_end": e2e,
        "peak_rss_ours_cheap": {"configuration": CHEAP, "repeats": memory},
        "peak_rss_official": official_memory,
        "anchor": ANCHOR,
        "not_measured": NOT_MEASURED,
        "notes": NOTES,
    }


NOT_MEASURED = {
    "official crop + landmarks (steps 0-1 and datagen's detection)":
        "Croper (dlib) runs once per video, but KeypointExtractor (face-alignment's FAN on every 256 crop, twice: "
        "step 1 and datagen) and face_detect (S3FD on every full frame) need the face-alignment package's weights "
        "and S3FD's, which are not on this machine (no network); the STIT paste of datagen needs FAN's landmarks too",
    "official align_img (step 2)": "the release's align_img needs numpy < 1.24 (it builds trans_params from "
                                   "size-1 arrays); only its ReconNet is timed (batch 1, as inference.py)",
    "official RetinaFace networks": "GPEN's and facexlib's RetinaFace classes build torchvision's ResNet-50, and "
                                    "torchvision cannot be installed beside this torch; both detectors are stand-ins "
                                    "running our RetinaFace-R50 (same architecture and random weights) on the image "
                                    "as the official detect prepares it",
    "official end to end / RSS": "inference.py as a whole needs the steps above; its memory is counted from the "
                                 "code and emulated with its own data structures (peak_rss_official)",
}
NOTES = ("random weights in the released layouts; ours / official on the same weights and inputs in one process "
         "(torch and OpenCV on 2 threads); frames_per_s = frames / seconds of the timed calls after one warm-up call "
         "(the warm-up is the FLOP-counted call; the official E-Net warms up on batch 1), best over rounds; "
         "network_seconds_per_frame = time inside each network's forward during the timed calls (forward hooks "
         "marking stages: talkingface.profiling.module_stage; exclusive, a network inside another counted once); "
         "share_of_peak = achieved GFLOP/s / the best fp32 matmul rate of the run (4096^3, "
         "trainer_overhead.matmul_peak_gflops); FLOPs count convolutions and matrix products (torch.utils."
         "flop_counter), not grid_sample, FFTs, upfirdn2d's elementwise work or NumPy")


if __name__ == "__main__":
    main()
