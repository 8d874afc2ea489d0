"""AudioDVP's hooks into the shared dubbing loop (docs/audiodvp.md, "Dubbing"): the official ``test_exp.py``,
``reenact.py``, the renderer's ``test.py`` and ``comp.py`` in one pass, pasted back into the full frame (the
official code stops at the 256 x 256 crop).

- ``prepare``: the target video's 3DMM fit (``target.fit_target``: the store's when the video is a fitted clip).
- ``crop``: for output frame m, the target coefficients of the source frames shown at outputs m-3 .. m+3 with a
  flag for those inside the output (the renderer's window is zero-padded past the ends), and the paste info: the
  portrait box and ``comp.py``'s blend weight from the frame's mouth mask (cached per source frame).
- ``generate`` (``Reenactment``, on the device): the audio feature rows m-6 .. m+6 (zero past the audio's ends)
  encoded (AT-net, or the registered feature as it is), Audio2Expression on each 7-row window gives the 7
  expressions, the lower face is rendered with them and the target's pose and lighting, and the neural renderer
  turns the 21-channel stack into the mouth region.
- ``paste``: ``comp.py``'s ``m * fake + (1 - m) * frame`` at the frame's resolution inside the portrait box
  (the blend weight resized to it): pixels where the weight is 0 are the source's own, bit for bit.

Frames without a face pass through; the source's frame rate is kept.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ...dubbing import DubbingHooks, DubbingSettings, SourceTrack
from ...dubbing.paste import paste_portrait
from ...profiling import stage
from .data import temporal_indices
from .rendering import FaceRenderer, to_uint8

if TYPE_CHECKING:
    from .model import AudioDVP

logger = logging.getLogger(__name__)

ALPHA_CACHE = 64  # blend weights of the most recent source frames (the ping-pong revisits them in order)


def dubbing_settings(model: "AudioDVP") -> DubbingSettings:
    opts = model.options
    return DubbingSettings(
        label="audiodvp", audio_feature=model.audio_feature, audio_reduction="flatten",
        audio_channels=model.audio_width, batch=opts["infer_batch"], seed=int(opts["seed"]), face=opts["face"],
        face_backend=opts["face_backend"], max_gap=int(opts["infer_max_gap"]), channels_last=False,
        amp=bool(opts["infer_amp"]), overlap_io=opts["overlap_io"],
        reverse_block_frames=int(opts["reverse_block_frames"]), audio_radius=2 * (model.window // 2),
        audio_pad="zero")


class BoundedCache(OrderedDict):
    """The ``size`` most recently used entries (the loop visits frames in output order, so neighbours hit)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def get_recent(self, key: Any) -> Any:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class Reenactment(nn.Module):
    """``(targets (B, window, 257 + 1), audio (B, C, 2 window - 1)) -> (B, 3, S, S)`` in [0, 1]: new expressions
    from the audio, the lower face rendered with them, the neural renderer's image.

    Output frame m's window shares 6 of its 7 frames with frame m + 1's: each frame's render depends only on its
    7 audio rows and its target coefficients, so renders are kept (``RENDER_CACHE`` most recent, keyed on those
    bytes) and each is made once, as ``reenact.py`` renders each frame once."""

    RENDER_CACHE = 32

    def __init__(self, model: "AudioDVP", faces: FaceRenderer):
        super().__init__()
        self.audio_encoder, self.audio2expression, self.renderer = (model.audio_encoder, model.audio2expression,
                                                                    model.renderer)
        self.__dict__["model"] = model  # not a submodule: the networks above are
        self.faces = faces
        self.cache = BoundedCache(self.RENDER_CACHE)

    def renders(self, targets: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (B, window, S, S, 3) in [0, 1], covered (B, window, S, S))``: the lower face of each window
        frame with its new expression, as reenact.py saves it (8-bit), zero past the output's ends."""
        batch, window = targets.shape[:2]
        size = self.faces.size
        rows = audio.float().transpose(1, 2)  # (B, 2 window - 1, C)
        coeffs, inside = targets[..., :-1].float(), targets[..., -1] > 0
        keys = self._keys(rows, coeffs, inside)
        missing = [(b, j) for b in range(batch) for j in range(window)
                   if inside[b, j] and self.cache.get_recent(keys[b][j]) is None]
        if missing:
            self._render_missing(missing, keys, rows, coeffs)
        image = targets.new_zeros(batch, window, size, size, 3, dtype=torch.float32)
        covered = torch.zeros(batch, window, size, size, dtype=torch.bool, device=targets.device)
        for b in range(batch):
            for j in range(window):
                if inside[b, j]:
                    image[b, j], covered[b, j] = self.cache.get_recent(keys[b][j])
        return image, covered

    def _keys(self, rows: torch.Tensor, coeffs: torch.Tensor, inside: torch.Tensor) -> list[list[bytes | None]]:
        """Per window frame: its 7 audio rows and its target coefficients as bytes (None past the ends)."""
        window = coeffs.shape[1]
        rows_cpu, coeffs_cpu, inside_cpu = rows.cpu().numpy(), coeffs.cpu().numpy(), inside.cpu().numpy()
        return [[rows_cpu[b, j:j + window].tobytes() + coeffs_cpu[b, j].tobytes() if inside_cpu[b, j] else None
                 for j in range(window)] for b in range(len(coeffs_cpu))]

    def _render_missing(self, missing: list[tuple[int, int]], keys: list, rows: torch.Tensor,
                        coeffs: torch.Tensor) -> None:
        model = self.__dict__["model"]
        window = model.window
        with torch.autocast(rows.device.type, enabled=False):  # geometry in float32 under the dub's fp16 AMP
            windows = torch.stack([rows[b, j:j + window] for b, j in missing])
            valid = windows.abs().amax(-1) > 0  # the loop's zero rows past the audio's ends
            with stage("audio to expression"):
                deltas = self.audio2expression(model.encode_audio(windows, valid)).squeeze(-1)
            chosen = torch.stack([coeffs[b, j] for b, j in missing]).clone()
            chosen[:, self.faces.exp] = deltas.to(chosen.dtype)
            with stage("render"):
                image, covered = self.faces.render(chosen, lower=True)
        image = to_uint8(image).float() / 255.0  # reenact.py's PNGs, read back by the renderer's test loader
        for n, (b, j) in enumerate(missing):
            self.cache.put(keys[b][j], (image[n], covered[n]))

    def forward(self, targets: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        image, _ = self.renders(targets, audio)
        batch, window, size = image.shape[:3]
        inside = targets[..., -1].float()[..., None, None, None].to(image.device)
        signed = (image * 2 - 1) * inside  # zero images (in [-1, 1]) past the ends, as temporal_single_dataset.py
        stacked = signed.permute(0, 1, 4, 2, 3).reshape(batch, 3 * window, size, size)
        return (self.renderer(stacked) + 1) / 2


class RenderPreview(Reenactment):
    """The dub's 3DMM render of each frame (the centre of the renderer's window) and where it covers:
    ``(B, 4, S, S)``, for the evaluation strips."""

    def forward(self, targets: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        image, covered = self.renders(targets, audio)
        centre = targets.shape[1] // 2
        return torch.cat([image[:, centre], covered[:, centre, ..., None].to(image.dtype)], -1).permute(0, 3, 1, 2)


class AudioDVPDubbing(DubbingHooks):
    """One dub with AudioDVP (module docstring)."""

    crops_depend_on_plan = True  # a crop holds its neighbours' targets and whether they are inside the output
    stages = ("3dmm fit", "blend weights", "audio to expression", "render")

    def __init__(self, model: "AudioDVP", preview: bool = False):
        self.model = model
        self.faces = model.face_renderer()
        self.preview = preview
        generator = (RenderPreview if preview else Reenactment)(model, self.faces)
        super().__init__(model.config, dubbing_settings(model), generator, model.device)
        self.coeffs: np.ndarray | None = None
        self.box: tuple[int, int, int] | None = None
        self.alphas = BoundedCache(ALPHA_CACHE)

    def prepare(self, source: SourceTrack, rng: np.random.Generator) -> None:
        from ...io_utils import file_identity
        from .target import fit_target

        model = self.model
        key = ("target", str(source.path), repr(file_identity(source.path)), float(source.fps),
               hash(np.nan_to_num(source.landmarks).tobytes()))
        height, width = source.frame_size
        with stage("3dmm fit"):
            fit = model.loaded_once(key, lambda: fit_target(source.path, source.fps, source.landmarks, source.valid,
                                                            (width, height),
                                                            self.faces.model, model.config, self.device,
                                                            model.options["fit_cache_dir"]))
        from .target import smooth_pose

        window = int(model.options["target_smoothing"])
        self.coeffs = smooth_pose(fit.coeffs, self.faces.model.coeff_slices, window)
        self.box, self.alphas = fit.box, BoundedCache(ALPHA_CACHE)

    def _alpha(self, source_frame: int) -> np.ndarray:
        """``comp.py``'s blend weight (S, S) of a source frame's mouth mask (the most recent ones kept: memory does
        not grow with the video)."""
        alpha = self.alphas.get_recent(source_frame)
        if alpha is None:
            with torch.no_grad(), stage("blend weights"):
                coeffs = torch.from_numpy(self.coeffs[source_frame:source_frame + 1])
                alpha = self.faces.composite_alpha(self.faces.mouth_mask(coeffs))[0].numpy().astype(np.float32)
            self.alphas.put(source_frame, alpha)
        return alpha

    def crop(self, frame: np.ndarray, source: SourceTrack, index: int) -> tuple[torch.Tensor, Any] | None:
        plan = source.plan
        shown = int(plan.source_index[index])
        if not source.valid[shown]:
            return None
        outputs, inside = temporal_indices(index, len(plan), self.model.window)
        frames = plan.source_index[outputs]
        targets = np.concatenate([self.coeffs[frames], inside[:, None].astype(np.float32)], axis=1)
        return torch.from_numpy(targets), (self.box, self._alpha(shown))

    def generate(self, generator: torch.nn.Module, faces: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return generator(faces, audio)

    def paste(self, frame: np.ndarray, face: np.ndarray, info: Any) -> np.ndarray:
        box, alpha = info
        if self.preview:  # the render where it covers the face
            return paste_portrait(frame, face[..., :3], face[..., 3], box)
        return paste_portrait(frame, face, alpha, box)
