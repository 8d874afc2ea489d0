"""LawDNet's hooks into the shared dubbing loop (``talkingface.dubbing``): its frontalised crop of each frame,
5 seeded references, the ``SmoothSqMask``-masked generator call and the inverse-warp paste-back (docs/lawdnet.md).

Official source: ``Exp-of-Junli/inference_function_DP2.py`` / ``http_serve.py``: references are 5 frames drawn
uniformly with replacement (``torch.randint``), every frame is aligned with its own landmarks at out_W = 1.25 M,
the whole crop is generated and scattered back (``FaceAlign.recover``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...dubbing import DubbingHooks, GenerateOption, SourceTrack
from ...dubbing.paste import feather_mask
from ...errors import ConfigError, DataError
from ..dinet.dubbing import dubbing_settings
from ..dinet.networks.container import face_size
from .data import align_face, paste_aligned, paste_scattered, smooth_square_mask

if TYPE_CHECKING:
    from .model import LawDNet

PASTES = ("feathered", "official")
REFERENCES = 5

LAWDNET_OPTIONS = (
    GenerateOption("paste", "feathered (default: inverse warp with a soft crop border, no holes or seams) or "
                            "official (the release's nearest-pixel scatter of the whole crop)", str, PASTES),
    GenerateOption("feather", "feathered paste: width in crop pixels of the ramp from the crop border to the "
                              "mouth region (default: lawdnet.feather; null there: the whole margin)", float),
)


def _to_tensor(face: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(face, np.float32) / 255.0).permute(2, 0, 1)


def reference_frames(valid: np.ndarray, rng: np.random.Generator, count: int = REFERENCES) -> np.ndarray:
    """``count`` source frames drawn uniformly with replacement among those with a face (the release draws over
    all frames, which fails on a frame without one)."""
    usable = np.flatnonzero(valid)
    if not len(usable):
        raise DataError("no frame of the source video has a face to take LawDNet's references from")
    return usable[rng.integers(0, len(usable), size=count)]


def mouth_margins(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Pixels from each crop border (top, bottom, left, right) to the region ``SmoothSqMask`` hides (< 0.5)."""
    rows, cols = np.flatnonzero((mask < 0.5).any(1)), np.flatnonzero((mask < 0.5).any(0))
    height, width = mask.shape
    return int(rows[0]), int(height - 1 - rows[-1]), int(cols[0]), int(width - 1 - cols[-1])


class LawDNetDubbing(DubbingHooks):
    """One dub with LawDNet at ``model.inference_mouth``: the aligned crop (13M/8 × 5M/4) of every frame."""

    def __init__(self, model: "LawDNet", paste: str | None = None, feather: float | None = None):
        super().__init__(model.config, dubbing_settings(model), model.networks.generator, model.device)
        opts = model.options
        self.paste_mode = str(paste or opts["paste"])
        if self.paste_mode not in PASTES:
            raise ConfigError(f"paste must be one of {PASTES}, got {self.paste_mode!r}")
        self.size = face_size(model.inference_mouth)
        self.out_w = self.size[1]
        feather = opts["feather"] if feather is None else feather
        feather = float("inf") if feather is None else float(feather)
        if feather < 0:
            raise ConfigError(f"feather must be >= 0, got {feather}")
        mask = smooth_square_mask(*self.size)
        self.alpha = feather_mask(*self.size, mouth_margins(mask.numpy()), feather)
        self.mask = mask.to(self.device)
        self.refs: torch.Tensor | None = None

    def prepare(self, source: SourceTrack, rng: np.random.Generator) -> None:
        picks = reference_frames(source.valid, rng)
        frames = source.fetch(set(int(p) for p in picks))
        refs = torch.cat([_to_tensor(align_face(frames[int(p)], source.landmarks[p], self.out_w)[0]) for p in picks])
        layout = torch.channels_last if self.settings.channels_last else torch.contiguous_format
        self.refs = refs[None].to(self.device).contiguous(memory_format=layout)

    def crop(self, frame: np.ndarray, source: SourceTrack, index: int) -> tuple[torch.Tensor, np.ndarray] | None:
        frame_index = int(source.plan.source_index[index])
        if not source.valid[frame_index]:
            return None
        face, matrix = align_face(frame, source.landmarks[frame_index], self.out_w)
        return _to_tensor(face), matrix

    def generate(self, generator: torch.nn.Module, faces: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return generator(faces * self.mask, self.refs.expand(len(faces), -1, -1, -1), audio)

    def paste(self, frame: np.ndarray, face: np.ndarray, info: Any) -> np.ndarray:
        pixels = np.asarray(face, np.float32) * 255.0
        if self.paste_mode == "official":
            return paste_scattered(frame, pixels, info)
        return paste_aligned(frame, pixels, info, self.alpha)
