"""GSmoothFace's hooks into the shared dubbing loop (docs/gsmoothface.md, "Dubbing"): the official ``demo.py`` (A2EP on
the driving audio), ``app/main_render_pred_results.py`` (the target's coefficients with A2EP's expressions) and TAFT's
``demo.sh`` (MAFB, ``net_G_ema(reference, blended)``) in one pass, pasted back into the full frame (the official code
writes TAFT's 512 x 512 crops).

- ``prepare``: the target's coefficients (``target.target_coefficients``), its static face box, TAFT's reference:
  the box of the first frame with a face (the official test set takes frame 0);
- ``prepare_audio``: A2EP's expressions for the whole driving audio at 25 fps (``model.predict_expressions``: chunks
  of at most 600 frames, cross-faded), with the chosen speaker's style (default: the target's own when it is a
  training clip);
- ``crop``: output frame m shows source frame s and hears 25 fps feature a: the box of frame s at TAFT's size, its
  coefficients with the expression row a, rendered and blended by MAFB (``faces.FaceBlender``); the paste weight is
  the blend mask, feathered;
- ``generate``: TAFT's EMA generator on (reference, blended); ``paste``: ``w · out + (1 - w) · frame`` inside the
  box at the frame's resolution, pixels with weight 0 untouched.

Frames without a face pass through; the source's frame rate is kept.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from ...dubbing import DubbingHooks, DubbingSettings, InferencePlan, SourceTrack
from ...dubbing.paste import paste_portrait
from ...face3d import crop_portrait, portrait_box
from ...profiling import stage
from .taft_data import to_signed

if TYPE_CHECKING:
    from .model import GSmoothFace

logger = logging.getLogger(__name__)

FEATHER = 1 / 64  # the paste weight's Gaussian blur, in box widths (ours: no hard edge where the mask ends)


def dubbing_settings(model: "GSmoothFace") -> DubbingSettings:
    opts = model.options
    feature = model.audio_feature or ""  # with wav2vec 2.0, A2EP reads the waveform (prepare_audio): no vectors
    return DubbingSettings(
        label="gsmoothface", audio_feature=feature, audio_reduction="flatten",
        audio_channels=model.feature_width(feature) if feature else 0, batch=opts["infer_batch"], seed=int(opts["seed"]),
        face=opts["face"], face_backend=opts["face_backend"], max_gap=int(opts["infer_max_gap"]),
        channels_last=False, amp=bool(opts["infer_amp"]), overlap_io=opts["overlap_io"],
        reverse_block_frames=int(opts["reverse_block_frames"]), audio_radius=0)


class TaftStep(nn.Module):
    """``(B, 6, S, S)`` = (the frame's box, its MAFB blend) in [0, 1] -> TAFT's output in [0, 1]
    (``preview``: the blend itself)."""

    def __init__(self, model: "GSmoothFace", preview: bool = False):
        super().__init__()
        self.taft = model.taft
        self.preview = preview
        self.reference: torch.Tensor | None = None  # (1, 3, S, S) in [-1, 1], set by ``prepare``

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        blended = faces[:, 3:6] * 2 - 1
        if self.preview:
            return (blended + 1) / 2
        reference = self.reference.to(faces.device, blended.dtype).expand(len(faces), -1, -1, -1)
        return (self.taft(reference, blended) + 1) / 2


class GSmoothFaceDubbing(DubbingHooks):
    """One dub with GSmoothFace (module docstring)."""

    crops_depend_on_plan = True  # a crop holds the expression of the audio its output frame hears
    stages = ("a2ep", "3dmm fit", "mafb")

    def __init__(self, model: "GSmoothFace", preview: bool = False, speaker: str | int | None = None):
        self.model = model
        self.blender = model.blender()
        self.speaker = speaker
        super().__init__(model.config, dubbing_settings(model), TaftStep(model, preview), model.device)
        self.expressions: np.ndarray | None = None
        self.coeffs: np.ndarray | None = None
        self.params: np.ndarray | None = None
        self.box: tuple[int, int, int] | None = None
        self.target: Path | None = None  # the dubbed video (its speaker is the default style)

    def prepare_audio(self, wav: np.ndarray, vectors: np.ndarray, plan: InferencePlan) -> None:
        one_hot = self.model.one_hot(self.speaker, self.target)
        rows = vectors if self.model.audio_feature else None
        with stage("a2ep"):
            self.expressions = self.model.predict_expressions(wav, rows, len(vectors), one_hot)

    def prepare(self, source: SourceTrack, rng: np.random.Generator) -> None:
        from ...io_utils import file_identity
        from .target import target_coefficients

        model = self.model
        self.target = source.path
        key = ("target", str(source.path), repr(file_identity(source.path)), float(source.fps),
               hash(np.nan_to_num(source.landmarks).tobytes()))
        height, width = source.frame_size
        with stage("3dmm fit"):
            fit = model.loaded_once(key, lambda: target_coefficients(source.path, source.fps, source.landmarks,
                                                                     source.valid, (width, height), model.config,
                                                                     model.options["fit_cache_dir"]))
        self.coeffs, self.params = fit.coeffs, fit.params
        t = model.options["taft"]
        self.box = portrait_box(source.landmarks, source.valid, float(t["crop_level"]), float(t["vertical_adjust"]))
        first = int(np.flatnonzero(source.valid)[0])
        frame = source.fetch({first})[first]
        self.generator.reference = to_signed(crop_portrait(frame, self.box, model.image_size))[None]

    def crop(self, frame: np.ndarray, source: SourceTrack, index: int) -> tuple[torch.Tensor, Any] | None:
        plan = source.plan
        shown = int(plan.source_index[index])
        if not source.valid[shown]:
            return None
        size = self.model.image_size
        box_image = crop_portrait(frame, self.box, size)
        coeffs = self.coeffs[shown].copy()
        heard = min(int(plan.audio_index[index]), len(self.expressions) - 1)
        coeffs[self.blender.model.coeff_slices["exp"]] = self.expressions[heard]
        with torch.no_grad(), stage("mafb"):
            out = self.blender.blend(to_signed(box_image)[None], torch.from_numpy(coeffs)[None],
                                     self.params[shown:shown + 1], self.box)
        alpha = gaussian_filter(out.mask[0, 0].numpy(), sigma=max(FEATHER * size, 0.5))  # 0 beyond 4 sigma
        faces = torch.cat([torch.from_numpy(np.asarray(box_image, np.float32) / 255).permute(2, 0, 1),
                           (out.blended[0] + 1) / 2], 0)
        return faces, (self.box, alpha.astype(np.float32))

    def generate(self, generator: torch.nn.Module, faces: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return generator(faces)

    def paste(self, frame: np.ndarray, face: np.ndarray, info: Any) -> np.ndarray:
        box, alpha = info
        return paste_portrait(frame, face, alpha, box)
