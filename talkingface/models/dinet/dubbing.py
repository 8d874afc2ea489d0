"""DINet's hooks into the shared dubbing loop (``talkingface.dubbing``): its crop box from the landmarks, its
5 seeded references, its generator call on a masked batch, and its two paste-backs (docs/dinet.md)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...dubbing import DubbingHooks, DubbingSettings, GenerateOption, SourceTrack
from ...errors import ConfigError, DataError
from .data import crop_box, crop_face, crop_radius, face_size, mouth_mask, plan_references
from .data.inference_plan import INFERENCE_SCALE, paste_dinet_feathered, paste_official

if TYPE_CHECKING:
    from .model import DINet

PASTES = ("feathered", "official")
Box4 = tuple[int, int, int, int]

DINET_OPTIONS = (
    GenerateOption("paste", "feathered (default: blends the whole crop, no seam) or official (the release's "
                            "hard paste of the top 3r rows)", str, PASTES),
    GenerateOption("feather", "feathered paste: ramp width in pixels (default: the model's dinet.feather)", float),
)


def face_box(landmarks: np.ndarray, valid: np.ndarray, frame: int, window: np.ndarray, scale: float,
             frame_size: tuple[int, int]) -> Box4 | None:
    """The official crop box of source ``frame`` (radius over the valid landmarks of ``window``), or None
    when the frame has no face or the box leaves the frame."""
    if not valid[frame]:
        return None
    window = np.asarray([w for w in window if valid[w]])
    box = crop_box(landmarks[frame], crop_radius(landmarks[window], scale))
    top, bottom, left, right = box
    if top < 0 or left < 0 or bottom > frame_size[0] or right > frame_size[1]:
        return None
    return box


def _to_tensor(face: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(face.astype(np.float32) / 255.0).permute(2, 0, 1)


def reference_tensor(source: SourceTrack, mouth: int, rng: np.random.Generator) -> torch.Tensor:
    """``(15, H, W)``: the 5 references chosen like inference.py (seeded); a pick without a usable face is
    replaced by a random source frame that has one."""
    landmarks, valid, frame_size = source.landmarks, source.valid, source.frame_size
    size = face_size(mouth)
    count = len(landmarks)
    usable = [f for f in range(count)
              if face_box(landmarks, valid, f, np.clip(np.arange(f - 2, f + 3), 0, count - 1), 1.05, frame_size)]
    if not usable:
        raise DataError(f"{source.path}: no frame has a face whose DINet crop fits inside the frame")
    picks: list[tuple[int, Box4]] = []
    for ref in plan_references(source.plan, rng):
        box = face_box(landmarks, valid, ref.source_frame, ref.landmark_window, ref.scale, frame_size)
        frame = ref.source_frame
        if box is None:
            frame = int(rng.choice(usable))
            window = np.clip(np.arange(frame - 2, frame + 3), 0, count - 1)
            box = face_box(landmarks, valid, frame, window, ref.scale, frame_size)
        picks.append((frame, box))
    frames = source.fetch({f for f, _ in picks})
    return torch.cat([_to_tensor(crop_face(frames[f], box, size)) for f, box in picks], 0)


def dubbing_settings(model: "DINet") -> DubbingSettings:
    """The loop's settings from the model's config section (``dinet``, or a successor's)."""
    opts = model.options
    return DubbingSettings(
        label=model.section, audio_feature=str(opts["audio_feature"]), audio_reduction=str(opts["audio_reduction"]),
        audio_channels=model.audio_channels, batch=opts["infer_batch"], seed=int(opts["seed"]), face=opts["face"],
        face_backend=opts["face_backend"], max_gap=int(opts["infer_max_gap"]),
        channels_last=bool(opts["channels_last"]), amp=bool(opts["infer_amp"]), overlap_io=opts["overlap_io"],
        reverse_block_frames=int(opts["reverse_block_frames"]))


class DINetDubbing(DubbingHooks):
    """One dub with DINet at ``model.inference_mouth``: the masked face, 5 references and 5 audio frames per call."""

    def __init__(self, model: "DINet", paste: str | None = None, feather: float | None = None):
        super().__init__(model.config, dubbing_settings(model), model.networks.generator, model.device)
        opts = model.options
        self.paste_mode = str(paste or opts["paste"])
        if self.paste_mode not in PASTES:
            raise ConfigError(f"paste must be one of {PASTES}, got {self.paste_mode!r}")
        feather = opts["feather"] if feather is None else feather
        self.feather = float("inf") if feather is None else float(feather)
        self.mouth = model.inference_mouth
        self.size = face_size(self.mouth)
        self.mask = torch.from_numpy(mouth_mask(*self.size, self.mouth)).to(self.device)
        self.refs: torch.Tensor | None = None

    def prepare(self, source: SourceTrack, rng: np.random.Generator) -> None:
        layout = torch.channels_last if self.settings.channels_last else torch.contiguous_format
        refs = reference_tensor(source, self.mouth, rng).to(self.device)
        self.refs = refs[None].contiguous(memory_format=layout)

    def crop(self, frame: np.ndarray, source: SourceTrack, index: int) -> tuple[torch.Tensor, Box4] | None:
        plan = source.plan
        box = face_box(source.landmarks, source.valid, int(plan.source_index[index]), plan.landmark_windows[index],
                       INFERENCE_SCALE, source.frame_size)
        return None if box is None else (_to_tensor(crop_face(frame, box, self.size)), box)

    def generate(self, generator: torch.nn.Module, faces: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return generator(faces * self.mask, self.refs.expand(len(faces), -1, -1, -1), audio)

    def paste(self, frame: np.ndarray, face: np.ndarray, info: Any) -> np.ndarray:
        if self.paste_mode == "official":
            return paste_official(frame, face, info)
        return paste_dinet_feathered(frame, face, info, self.feather)
