"""AudioDVP's training data from the clip store (docs/audiodvp.md, "Training"):

- ``nfr_cache``: per clip, what ``utils/build_nfr_dataset.py`` writes: the portrait crops, the rendered faces and
  the dilated mouth masks at the renderer's size, with ``A = crop & mask`` and ``B = render & mask``; made once
  from the clip's ``face3d`` coefficients (AudioDVP convention) and cached as ``.npy`` files;
- ``RendererWindows``: the neural renderer's pairs (``temporal_dataset.py``): the 7 masked renders around a frame,
  stacked on channels in [-1, 1] with zero images past the clip's ends, and the frame's masked crop; a seeded
  horizontal flip of both (pix2pix flips unless ``--no_flip``);
- ``ExpressionWindows``: Audio2Expression's pairs (``audio_expression_dataset.py``): the 7 per-frame audio features
  around a frame (zero past the clip's ends, marked in ``valid``) and the frame's fitted expression (64).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ...errors import DataError
from ...face3d import ParametricFaceModel, crop_portrait
from ...io_utils import file_identity
from ..common.datasets import SeededMemmapDataset, cache_folder, write_frame_cache
from .rendering import FaceRenderer, to_uint8, window_offsets

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
CACHE_FILES = ("crops", "renders", "masks")


def portrait_box_of(params: np.ndarray) -> tuple[int, int, int]:
    """``(left, top, size)`` from a face3d portrait row (frame width, frame height, left, top, 256 / size)."""
    return int(round(params[2])), int(round(params[3])), int(round(256.0 / params[4]))


def read_audiodvp_face3d(clip: Any) -> tuple[np.ndarray, np.ndarray]:
    """The clip's ``(coeffs (T, 257), crop_params (T, 5))`` fitted in AudioDVP's convention."""
    from ...data.face3d_step import read_face3d

    face3d = read_face3d(clip)
    if face3d.info.get("convention") != "audiodvp" or face3d.info.get("crop") != "portrait":
        raise DataError(f"{clip.root}/face3d holds {face3d.info.get('convention')} coefficients; AudioDVP needs "
                        f"face3d.convention=audiodvp (the portrait crop) — preprocess with "
                        f"--face3d.convention=audiodvp")
    return face3d.coeffs, face3d.crop_params


class NfrClip:
    """One clip's cached renderer data: ``crops``/``renders`` (T, S, S, 3) uint8, ``masks`` (T, S, S) uint8 0/1,
    ``valid`` (T,) frames with a face."""

    def __init__(self, name: str, folder: Path, valid: np.ndarray):
        self.name, self.folder, self.valid = name, folder, valid

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.npy"


def nfr_cache(clip: Any, face_model: ParametricFaceModel, renderer: FaceRenderer, cache_root: Path,
              device: torch.device, batch: int = 16) -> NfrClip:
    """Build (or reuse) ``clip``'s renderer data in ``cache_root``; keyed on the clip's video and coefficients, the
    face model file and the sizes, written atomically (a half-built entry is never read)."""
    coeffs, params = read_audiodvp_face3d(clip)
    valid = clip.face_valid()[:len(coeffs)]
    key = {"version": CACHE_VERSION, "video": file_identity(clip.video_path),
           "coeffs": file_identity(clip.root / "face3d" / "coeffs.npy"), "face_model": file_identity(face_model.model_path),
           "size": renderer.size, "dilate": renderer.dilate_iterations}
    folder = cache_folder(cache_root, clip.name, key)
    entry = NfrClip(clip.name, folder, valid)
    if (folder / "key.json").is_file():
        return entry
    folder.mkdir(parents=True, exist_ok=True)
    count, size = len(coeffs), renderer.size
    box = portrait_box_of(params[0])

    def fill(arrays: dict[str, np.ndarray], start: int, crops: np.ndarray) -> None:
        part = torch.from_numpy(coeffs[start:start + len(crops)]).to(device)
        with torch.no_grad():
            image, _ = renderer.render(part)
            mask = (renderer.mouth_mask(part) > 0.5).cpu().numpy()
        keep = mask[..., None]
        arrays["crops"][start:start + len(crops)] = np.where(keep, crops, 0)
        arrays["renders"][start:start + len(crops)] = np.where(keep, to_uint8(image).cpu().numpy(), 0)
        arrays["masks"][start:start + len(crops)] = mask

    shapes = {"crops": (count, size, size, 3), "renders": (count, size, size, 3), "masks": (count, size, size)}
    write_frame_cache(clip.video_path, count, {name: (entry.path(name), shapes[name]) for name in CACHE_FILES},
                      lambda frame: crop_portrait(frame, box, size), fill, batch, folder / "key.json", key)
    logger.info("%s: AudioDVP renderer data cached (%d frames at %d px)", clip.name, count, size)
    return entry


def build_nfr_clips(store: Any, split: str, face_model: ParametricFaceModel, renderer: FaceRenderer,
                    cache_dir: str | Path | None, device: torch.device) -> list[NfrClip]:
    """Every clip of ``split`` with a face, cached; DataError when none has one."""
    root = Path(cache_dir) if cache_dir else Path(store.root) / "cache" / "audiodvp_nfr"
    clips = [nfr_cache(clip, face_model, renderer, root, device) for clip in store.split(split)]
    clips = [clip for clip in clips if clip.valid.any()]
    if not clips:
        raise DataError(f"{store.root} split {split!r}: no clip with a face for AudioDVP's renderer")
    return clips


def temporal_indices(index: int, count: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``(frames, inside)`` of the ``window`` frames centred on ``index`` in a sequence of ``count``: frames clamped
    into range, ``inside`` False where AudioDVP pads with zeros."""
    frames = index + np.array(list(window_offsets(window)))
    inside = (frames >= 0) & (frames < count)
    return np.clip(frames, 0, count - 1), inside


def to_signed(images: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [-1, 1] (pix2pix's Normalize(0.5, 0.5))."""
    return torch.from_numpy(np.array(images, dtype=np.float32)).movedim(-1, -3) / 127.5 - 1.0


class RendererWindows(SeededMemmapDataset):
    """The neural renderer's items: ``renders`` (3 * window, S, S), ``target`` (3, S, S), both in [-1, 1]."""

    def __init__(self, clips: list[NfrClip], window: int = 7, flip: bool = True, seed: int | None = None,
                 repeats: int = 1):
        self.clips, self.window, self.flip, self.seed = clips, int(window), bool(flip), seed
        self.repeats = max(int(repeats), 1)
        self.index = [(c, int(f)) for c, clip in enumerate(clips) for f in np.flatnonzero(clip.valid)]

    def __len__(self) -> int:
        return len(self.index) * self.repeats

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        slot, frame = self.index[index % len(self.index)]
        clip = self.clips[slot]
        renders = self.mapped(3 * slot, clip.path("renders"))
        crops = self.mapped(3 * slot + 1, clip.path("crops"))
        frames, inside = temporal_indices(frame, len(renders), self.window)
        stacked = to_signed(renders[frames]) * torch.from_numpy(inside).float()[:, None, None, None]
        target = to_signed(crops[frame])
        if self.flip and self.generator(index).random() < 0.5:
            stacked, target = stacked.flip(-1), target.flip(-1)
        return {"renders": stacked.reshape(-1, *stacked.shape[-2:]), "target": target}


class ExpressionWindows(Dataset):
    """Audio2Expression's items: ``audio`` (window, *feature shape) float32 (zero where ``valid`` is False),
    ``valid`` (window,) bool, ``delta`` (64,) the fitted expression."""

    def __init__(self, store: Any, split: str, feature: str, exp: slice, window: int = 7):
        self.window = int(window)
        self.audio: list[np.ndarray] = []
        self.deltas: list[np.ndarray] = []
        self.index: list[tuple[int, int]] = []
        for clip in store.split(split):
            coeffs, _ = read_audiodvp_face3d(clip)
            audio = clip.feature(feature)
            count = min(len(coeffs), len(audio))
            valid = clip.face_valid()[:count]
            slot = len(self.audio)
            self.audio.append(audio[:count].astype(np.float32))
            self.deltas.append(coeffs[:count, exp].astype(np.float32))
            self.index.extend((slot, int(f)) for f in np.flatnonzero(valid))
        if not self.index:
            raise DataError(f"{store.root} split {split!r}: no frame with a face and {feature!r} features for "
                            f"AudioDVP's Audio2Expression")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        slot, frame = self.index[index]
        audio = self.audio[slot]
        frames, inside = temporal_indices(frame, len(audio), self.window)
        window = audio[frames] * inside.reshape(-1, *([1] * (audio.ndim - 1)))
        return {"audio": torch.from_numpy(np.ascontiguousarray(window, np.float32)),
                "valid": torch.from_numpy(inside), "delta": torch.from_numpy(self.deltas[slot][frame])}
