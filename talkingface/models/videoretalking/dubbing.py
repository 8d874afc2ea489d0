"""VideoReTalking's hooks into the shared dubbing loop (``talkingface.dubbing``), the release's steps 0–6 in-process
(docs/videoretalking.md, "Dubbing"):

- ``prepare``: the reference. ``stabilised`` (the release): one streaming pass computes the FFHQ crop and every
  frame's 3DMM semantics (``stabilise.Stabiliser``); each frame's reference is then D-Net's expression-neutral face
  (``expression``: neutral, smile or an image), GPEN-enhanced, pasted back into the frame. ``frame``: one source frame
  with a face, chosen by the seed, for every output frame (what the demo trains for).
- ``crop``: the face box from the landmarks (``data.face_box``), the original face with its lower half zeroed and the
  reference face at E-Net's 384 (or the L-Net's size), BGR in [0, 1]: ``(6, S, S)``.
- ``generate``: E-Net around the L-Net (or the L-Net alone) on the frame's mel chunk.
- ``paste``: the face back into its box, then GFPGAN on the frame, ParseNet's mouth mask and a Laplacian blend of the
  restored mouth, and the face-mask Laplacian blend over the original frame; ``blend: native`` does both inside the
  face box at the frame's resolution, ``official`` resizes whole frames to 512 and back as the release. Without the
  enhancement weights the pasted face is feathered into the frame (a warning says what is skipped).

``timing_networks`` (for timing only, ``timing.py``): ReconNet, the template and the enhancement networks are random,
and RetinaFace reports the face of the frame's tracked landmarks (mapped into the 256 crop for the reference).

Frames without a face pass through (the release raises), the source fps is kept, memory stays bounded (no frame is
held beyond the loop's batches), and nothing is cached on disk by basename.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...dubbing import DubbingHooks, DubbingSettings, GenerateOption, SourceTrack
from ...dubbing.paste import feather_mask, paste_feathered, smoothstep
from ...errors import ConfigError, DataError
from ...profiling import stage, staged
from ..dinet.data.crops import crop_face
from .data import centred_window, face_box, lower_half_masked, to_bgr_tensor
from .networks.enet import SCALE as ENET_SCALE

if TYPE_CHECKING:
    from .model import VideoReTalking

logger = logging.getLogger(__name__)

REFERENCES = ("stabilised", "frame")
BLENDS = ("native", "official")
ENHANCE = ("auto", "none")
MEL_SHAPE = (80, 16)
FEATHER_SHARE = 0.15  # without ParseNet: the feathered paste ramps over this share of the box's side

VIDEORETALKING_OPTIONS = (
    GenerateOption("reference", "stabilised (the release: D-Net's expression-neutral face of each frame) or frame "
                                "(one source frame for all)", str, REFERENCES),
    GenerateOption("expression", "stabilised reference: neutral or smile (expression.mat) or a face image path", str),
    GenerateOption("enhance", "auto (GPEN, GFPGAN and ParseNet where their files are present) or none", str, ENHANCE),
    GenerateOption("blend", "native (blend in the face box at the frame's resolution) or official (whole frame at "
                            "512, as the release)", str, BLENDS),
)


class PasteInfo(NamedTuple):
    """What ``crop`` hands to ``paste``: the face box (top, bottom, left, right) and the frame's tracked (68, 2)
    landmarks (the face the timing networks' RetinaFace reports)."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray | None = None


def dubbing_settings(model: "VideoReTalking") -> DubbingSettings:
    opts = model.options
    return DubbingSettings(
        label="videoretalking", audio_feature="mel", audio_reduction="flatten", audio_channels=MEL_SHAPE[0] * MEL_SHAPE[1],
        batch=opts["infer_batch"], seed=int(opts["seed"]), face=opts["face"], face_backend=opts["face_backend"],
        max_gap=int(opts["infer_max_gap"]), channels_last=bool(opts["channels_last"]), amp=bool(opts["infer_amp"]),
        overlap_io=opts["overlap_io"], reverse_block_frames=int(opts["reverse_block_frames"]))


class Synthesis(nn.Module):
    """The dubbing generator: ``(mel (B, 1, 80, 16), faces (B, 6, S, S)) -> (B, 3, S', S')`` BGR, E-Net around the
    L-Net (S = S' = 384) or the L-Net alone (S = S' = its size)."""

    def __init__(self, lnet: nn.Module, enet: nn.Module | None, lnet_size: int):
        super().__init__()
        self.lnet, self.enet, self.lnet_size = lnet, enet, lnet_size

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        if self.enet is not None:
            return self.enet(mel, faces, faces[:, 3:])[0]
        if faces.shape[-1] != self.lnet_size:
            faces = F.interpolate(faces, size=(self.lnet_size, self.lnet_size), mode="bilinear", align_corners=False)
        return self.lnet(mel, faces)


class VideoReTalkingDubbing(DubbingHooks):
    """One dub with VideoReTalking (module docstring)."""

    stages = ("stabilise", "reference enhancement", "frame enhancement", "blend")

    def __init__(self, model: "VideoReTalking", reference: str | None = None, expression: str | None = None,
                 enhance: str | None = None, blend: str | None = None):
        opts = model.options
        self.model = model
        self.use_enet = bool(opts["enet"])
        synthesis = Synthesis(model.lnet, model.enet if self.use_enet else None, model.lnet_size)
        super().__init__(model.config, dubbing_settings(model), synthesis, model.device)
        self.reference = str(reference or opts["reference"])
        self.expression = str(expression or opts["expression"])
        self.enhance = str(enhance or opts["enhance"])
        self.blend = str(blend or opts["blend"])
        for name, value, allowed in (("reference", self.reference, REFERENCES), ("enhance", self.enhance, ENHANCE),
                                     ("blend", self.blend, BLENDS)):
            if value not in allowed:
                raise ConfigError(f"videoretalking {name} must be one of {allowed}, got {value!r}")
        self.size = model.lnet_size * ENET_SCALE if self.use_enet else model.lnet_size
        self.pads = [float(p) for p in opts["pads"]]
        self.checkpoint_dir = Path(opts["checkpoint_dir"])
        self.seed = int(opts["seed"])
        self.timing = bool(opts["timing_networks"])
        self.reference_face: torch.Tensor | None = None
        self.stabiliser: Any = None
        self.state: Any = None
        self.nets: Any = None
        self.calls = 0

    # ---- references ----------------------------------------------------------------------------
    def prepare(self, source: SourceTrack, rng: np.random.Generator) -> None:
        self.seed = int(rng.integers(0, 2**31 - 1))
        if self.enhance == "auto":
            self.nets = self.model.loaded_once(("enhance", str(self.checkpoint_dir), str(self.device)),
                                               self._load_enhancement)
        if self.reference == "frame":
            self._prepare_frame_reference(source, rng)
        else:
            self._prepare_stabiliser(source)

    def _load_enhancement(self) -> Any:
        """The enhancement networks: the released files found in ``checkpoint_dir``, or the random timing networks."""
        if self.timing:
            from .timing import timing_enhancement

            return timing_enhancement(self.device)
        from .enhance import load_enhancement

        return load_enhancement(self.checkpoint_dir, self.device)

    def _build_stabiliser(self) -> Any:
        """The stabiliser: ReconNet and the template from the released files, or the random timing ones."""
        if self.timing:
            from .timing import timing_stabiliser

            return timing_stabiliser(self.model.dnet, self.model.options["bfm_folder"], self.device)
        from .stabilise import build_stabiliser

        return build_stabiliser(self.model, self.expression, self.device)

    def _known(self, size: tuple[int, ...], landmarks: np.ndarray | None) -> Any:
        """With the timing networks, a context in which RetinaFace reports the face of ``landmarks`` for an image of
        ``size`` (height, width); a context doing nothing otherwise."""
        if not self.timing or landmarks is None:
            return contextlib.nullcontext()
        from .timing import known_face, known_faces

        return known_faces({(int(size[0]), int(size[1])): known_face(landmarks)})

    def _box(self, source: SourceTrack, window: np.ndarray) -> tuple[int, int, int, int] | None:
        return face_box(source.landmarks, source.valid, window, source.frame_size, self.pads)

    def _prepare_frame_reference(self, source: SourceTrack, rng: np.random.Generator) -> None:
        count = len(source.landmarks)
        boxes = {int(f): self._box(source, centred_window(int(f), count)) for f in np.flatnonzero(source.valid)}
        usable = [f for f, box in boxes.items() if box is not None]
        if not usable:
            raise DataError(f"{source.path}: no frame has a face to take VideoReTalking's reference from")
        pick = usable[int(rng.integers(len(usable)))]
        frame = source.fetch({pick})[pick]
        self.reference_face = to_bgr_tensor(crop_face(frame, boxes[pick], (self.size, self.size)))

    def _prepare_stabiliser(self, source: SourceTrack) -> None:
        from ...media import iter_frames

        self.stabiliser = self.model.loaded_once(("stabiliser", self.expression, str(self.device)),
                                                 self._build_stabiliser)
        height, width = source.frame_size
        with stage("stabilise"):
            self.state = self.stabiliser.analyse(staged("decode", iter_frames(source.path, fps=source.fps)),
                                                 source.landmarks, source.valid, (width, height))

    def _reference(self, frame: np.ndarray, frame_index: int, box: tuple[int, int, int, int]) -> torch.Tensor:
        if self.reference == "frame":
            return self.reference_face
        from .stabilise import paste_stabilised

        with stage("stabilise"):
            face = self.stabiliser.stabilised(self.state, frame, frame_index)
        if self.nets is not None and self.nets.gpen is not None:
            from .enhance import enhance_reference

            with stage("reference enhancement"), self._known(face.shape, self.state.landmarks[frame_index]):
                face = np.ascontiguousarray(enhance_reference(face[..., ::-1], self.nets)[..., ::-1])
        return to_bgr_tensor(crop_face(paste_stabilised(frame, face, self.state), box, (self.size, self.size)))

    # ---- the loop's hooks ----------------------------------------------------------------------
    def crop(self, frame: np.ndarray, source: SourceTrack, index: int) -> tuple[torch.Tensor, Any] | None:
        frame_index = int(source.plan.source_index[index])
        if not source.valid[frame_index]:
            return None
        box = self._box(source, source.plan.landmark_windows[index])
        if box is None:
            return None
        original = to_bgr_tensor(crop_face(frame, box, (self.size, self.size)))
        faces = torch.cat([lower_half_masked(original), self._reference(frame, frame_index, box)])
        return faces, PasteInfo(box, source.landmarks[frame_index])

    def generate(self, generator: nn.Module, faces: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        mel = audio[:, :, audio.shape[2] // 2].reshape(len(audio), 1, *MEL_SHAPE).to(faces.dtype)
        noise = self.use_enet and self.model.enet.noise == "random"
        with torch.random.fork_rng(devices=[]) if noise else contextlib.nullcontext():
            if noise:
                torch.manual_seed(self.seed + self.calls)  # E-Net's noise: reproducible per dub and batch
            out = generator(mel.contiguous(), faces)
        self.calls += 1
        return out.flip(1)  # BGR -> RGB

    def paste(self, frame: np.ndarray, face: np.ndarray, info: Any) -> np.ndarray:
        """The release's post-processing (module docstring); without ParseNet (or without a detected face) the
        feathered paste. ``info``: ``crop``'s ``PasteInfo``, or a bare face box."""
        box, landmarks = info if isinstance(info, PasteInfo) else (info, None)
        nets = self.nets
        if nets is None or nets.parsenet is None or nets.detector is None:
            return self._feathered(frame, face, box)
        from ...face.parsenet import mouth_mask
        from .enhance import face_blend, restore_frame

        top, bottom, left, right = box
        pasted = paste_feathered(frame, face, box, np.ones((bottom - top, right - left), np.float32))
        if nets.gfpgan is not None:  # GFPGAN on the frame; only its mouth and teeth are kept
            with stage("frame enhancement"), self._known(frame.shape, landmarks):
                restored = np.ascontiguousarray(restore_frame(np.ascontiguousarray(pasted[..., ::-1]), nets)[..., ::-1])
            with stage("blend"):
                mouth = np.zeros(frame.shape[:2], np.float32)
                mouth[top:bottom, left:right] = mouth_mask(nets.parsenet, restored[top:bottom, left:right],
                                                           channels="rgb")  # {0, 1}, as the release's uint8 cast
                pasted = self._blend(pasted, restored, mouth, box, 10)
        with stage("blend"), self._known(frame.shape, landmarks):
            blend = face_blend(np.ascontiguousarray(pasted[..., ::-1]), nets, bbox=box)
            if blend is None:  # no face found at 0.9 (the release raises)
                return self._feathered(frame, face, box)
            return self._blend(frame, np.ascontiguousarray(blend.face[..., ::-1]), blend.mask, box, 6)

    def _blend(self, base: np.ndarray, top: np.ndarray, mask: np.ndarray, box, levels: int) -> np.ndarray:
        """``top`` over ``base`` where ``mask`` is 1, Laplacian pyramids of ``levels``: whole frames at 512 and back
        (``official``) or inside the face box at the frame's resolution (``native``); uint8 frames."""
        from .blending import blend_native, blend_official

        if self.blend == "official":
            return blend_official(base, top, mask, levels, uint8=True)
        return blend_native(base, top, mask, box, levels, margin=max(8, (box[1] - box[0]) // 8))

    def _feathered(self, frame: np.ndarray, face: np.ndarray, box) -> np.ndarray:
        """The face pasted with a soft border and a soft upper edge at the box's middle (the L-Net regenerates
        the lower half; the upper half stays the frame's own, sharp at any resolution)."""
        top, bottom, left, right = box
        height, width = bottom - top, right - left
        ramp = max(FEATHER_SHARE * min(height, width), 1.0)
        upper = smoothstep((np.arange(height) + 0.5 - (height / 2 - ramp / 2)) / ramp)
        alpha = upper[:, None] * feather_mask(height, width, (ramp,) * 4, ramp)
        return paste_feathered(frame, face, box, alpha.astype(np.float32))
