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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ...dubbing import DubbingHooks, DubbingSettings, SourceTrack
from ...dubbing.paste import to_frame_dtype
from ...face.crops import resize_bilinear
from .rendering import FaceRenderer, to_uint8, window_offsets

if TYPE_CHECKING:
    from .model import AudioDVP

logger = logging.getLogger(__name__)


def dubbing_settings(model: "AudioDVP") -> DubbingSettings:
    opts = model.options
    return DubbingSettings(
        label="audiodvp", audio_feature=model.audio_feature, audio_reduction="flatten",
        audio_channels=model.audio_width, batch=opts["infer_batch"], seed=int(opts["seed"]), face=opts["face"],
        face_backend=opts["face_backend"], max_gap=int(opts["infer_max_gap"]), channels_last=False,
        amp=bool(opts["infer_amp"]), overlap_io=opts["overlap_io"],
        reverse_block_frames=int(opts["reverse_block_frames"]), audio_radius=2 * (model.window // 2),
        audio_pad="zero")


class Reenactment(nn.Module):
    """``(targets (B, window, 257 + 1), audio (B, C, 2 window - 1)) -> (B, 3, S, S)`` in [0, 1]: new expressions
    from the audio, the lower face rendered with them, the neural renderer's image."""

    def __init__(self, model: "AudioDVP", faces: FaceRenderer):
        super().__init__()
        self.audio_encoder, self.audio2expression, self.renderer = (model.audio_encoder, model.audio2expression,
                                                                    model.renderer)
        self.__dict__["model"] = model  # not a submodule: the networks above are
        self.faces = faces

    def expressions(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, window, exp) for the window's frames from (B, C, 2 window - 1) feature rows."""
        model = self.__dict__["model"]
        rows = audio.transpose(1, 2)
        valid = rows.abs().amax(-1) > 0  # the loop's zero rows past the audio's ends
        features = model.encode_audio(rows, valid)
        window = model.window
        deltas = [self.audio2expression(features[:, j:j + window]).squeeze(-1) for j in range(window)]
        return torch.stack(deltas, dim=1)

    def renders(self, targets: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (B, window, S, S, 3) in [0, 1], covered (B, window, S, S))``: the lower face of each window
        frame with its new expression, as reenact.py saves it (8-bit), zero past the output's ends."""
        batch, window = targets.shape[:2]
        coeffs, inside = targets[..., :-1].float().clone(), targets[..., -1].float()
        with torch.autocast(targets.device.type, enabled=False):  # geometry in float32 under the dub's fp16 AMP
            coeffs[..., self.faces.exp] = self.expressions(audio.float()).to(coeffs.dtype)
            image, covered = self.faces.render(coeffs.reshape(batch * window, -1), lower=True)
        image = to_uint8(image).float() / 255.0  # reenact.py's PNGs, read back by the renderer's test loader
        size = image.shape[1]
        image = image.reshape(batch, window, size, size, 3) * inside[..., None, None, None]
        return image, covered.reshape(batch, window, size, size) & (inside[..., None, None] > 0)

    def forward(self, targets: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        image, _ = self.renders(targets, audio)
        batch, window, size = image.shape[:3]
        inside = targets[..., -1].float()[..., None, None, None]
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

    def __init__(self, model: "AudioDVP", preview: bool = False):
        self.model = model
        self.faces = model.face_renderer()
        self.preview = preview
        generator = (RenderPreview if preview else Reenactment)(model, self.faces)
        super().__init__(model.config, dubbing_settings(model), generator, model.device)
        self.coeffs: np.ndarray | None = None
        self.box: tuple[int, int, int] | None = None
        self.alphas: dict[int, np.ndarray] = {}

    def prepare(self, source: SourceTrack, rng: np.random.Generator) -> None:
        from ...io_utils import file_identity
        from .target import fit_target

        model = self.model
        key = ("target", str(source.path), repr(file_identity(source.path)), float(source.fps),
               hash(np.nan_to_num(source.landmarks).tobytes()))
        fit = model.loaded_once(key, lambda: fit_target(source.path, source.fps, source.landmarks, source.valid,
                                                        self.faces.model, model.config, self.device,
                                                        model.options["fit_cache_dir"]))
        from .target import smooth_pose

        window = int(model.options["target_smoothing"])
        self.coeffs = smooth_pose(fit.coeffs, self.faces.model.coeff_slices, window)
        self.box, self.alphas = fit.box, {}

    def _alpha(self, source_frame: int) -> np.ndarray:
        """``comp.py``'s blend weight (S, S) of a source frame's mouth mask."""
        if source_frame not in self.alphas:
            with torch.no_grad():
                coeffs = torch.from_numpy(self.coeffs[source_frame:source_frame + 1])
                alpha = self.faces.composite_alpha(self.faces.mouth_mask(coeffs))
            self.alphas[source_frame] = alpha[0].numpy().astype(np.float32)
        return self.alphas[source_frame]

    def crop(self, frame: np.ndarray, source: SourceTrack, index: int) -> tuple[torch.Tensor, Any] | None:
        plan = source.plan
        shown = int(plan.source_index[index])
        if not source.valid[shown]:
            return None
        outputs = index + np.array(list(window_offsets(self.model.window)))
        inside = (outputs >= 0) & (outputs < len(plan))
        frames = plan.source_index[np.clip(outputs, 0, len(plan) - 1)]
        targets = np.concatenate([self.coeffs[frames], inside[:, None].astype(np.float32)], axis=1)
        return torch.from_numpy(targets), (self.box, self._alpha(shown))

    def generate(self, generator: torch.nn.Module, faces: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return generator(faces, audio)

    def paste(self, frame: np.ndarray, face: np.ndarray, info: Any) -> np.ndarray:
        box, alpha = info
        if self.preview:  # the render where it covers the face
            return paste_portrait(frame, face[..., :3], face[..., 3], box)
        return paste_portrait(frame, face, alpha, box)


def paste_portrait(frame: np.ndarray, face: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """``alpha * face + (1 - alpha) * frame`` inside the portrait ``box`` (left, top, size), the (S, S) ``face``
    (float in [0, 1]) and ``alpha`` resized to the box; a copy, unchanged where alpha is 0 or outside the box."""
    left, top, size = box
    height, width = frame.shape[:2]
    rows = slice(max(top, 0), min(top + size, height))
    cols = slice(max(left, 0), min(left + size, width))
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return frame.copy()
    big_alpha = resize_bilinear(alpha[..., None].astype(np.float32), (size, size))[..., 0]
    big_face = resize_bilinear(np.asarray(face, np.float32) * 255.0, (size, size))
    inner = (slice(rows.start - top, rows.stop - top), slice(cols.start - left, cols.stop - left))
    weight = np.clip(big_alpha[inner], 0.0, 1.0)[..., None]
    touched = weight[..., 0] > 0
    region = frame[rows, cols].astype(np.float32)
    blended = weight * big_face[inner] + (1.0 - weight) * region
    out = frame.copy()
    patch = out[rows, cols]
    patch[touched] = to_frame_dtype(blended, frame.dtype)[touched]
    return out
