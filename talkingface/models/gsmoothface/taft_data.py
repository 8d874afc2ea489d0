"""TAFT's training pairs from the clip store (docs/gsmoothface.md, "Training TAFT").

The released trainer (``trainers/face_to_face_trainer.py`` with ``HDTFDataset``) feeds ``net_G(reference, blended)``
and compares the output with the frame itself: ``blended`` is the frame with its *own* 3DMM render pasted in by MAFB,
``reference`` another frame of the same video. Here, per clip and cached once (keyed on the video, the coefficients,
the face model and the size): the face box crops of every frame (``crops``), MAFB's blend of each frame with its own
render (``blended``) and the blend weight (``masks``), uint8 at ``image_size``, streamed into memory-mapped files.
``TaftPairs`` draws the reference frame from the item's own seeded generator (the same draws in every worker and on
resume) among the clip's other frames with a face.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import DataError
from ...face3d import crop_portrait, portrait_box
from ...io_utils import file_identity
from ..common.datasets import SeededMemmapDataset, cache_folder, write_frame_cache
from .data import read_face3d_with_params
from .faces import FaceBlender

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
CACHE_FILES = ("crops", "blended", "masks")


def clip_box(clip: Any, crop_level: float, vertical_adjust: float) -> tuple[int, int, int]:
    """The clip's static face box (left, top, side): ``portrait_box`` of its landmarks (as HDTF's fixed crops)."""
    landmarks = clip.landmarks()
    return portrait_box(landmarks, clip.face_valid(landmarks), crop_level, vertical_adjust)


def to_signed(images: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.array(images, dtype=np.float32)).movedim(-1, -3) / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8 (rounded)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class TaftClip:
    """One clip's cached pairs: ``crops``/``blended`` (T, S, S, 3) uint8, ``masks`` (T, S, S) uint8 (0-255),
    ``valid`` (T,) frames with a face, ``box`` its face box."""

    def __init__(self, name: str, folder: Path, valid: np.ndarray, box: tuple[int, int, int]):
        self.name, self.folder, self.valid, self.box = name, folder, valid, box

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.npy"


def taft_cache(clip: Any, blender: FaceBlender, cache_root: Path, box_settings: tuple[float, float],
               device: torch.device, batch: int = 8) -> TaftClip:
    """Build (or reuse) ``clip``'s TAFT data in ``cache_root``, written atomically (a half-built entry is never
    read)."""
    coeffs, params = read_face3d_with_params(clip)
    valid = np.zeros(len(coeffs), bool)
    marks = clip.face_valid()[:len(coeffs)]
    valid[:len(marks)] = marks
    box = clip_box(clip, *box_settings)
    size = blender.size
    key = {"version": CACHE_VERSION, "video": file_identity(clip.video_path),
           "coeffs": file_identity(clip.root / "face3d" / "coeffs.npy"),
           "face_model": file_identity(blender.model.model_path), "size": size, "box": list(box)}
    folder = cache_folder(cache_root, clip.name, key)
    entry = TaftClip(clip.name, folder, valid, box)
    if (folder / "key.json").is_file():
        return entry
    folder.mkdir(parents=True, exist_ok=True)
    count = len(coeffs)

    def fill(arrays: dict[str, np.ndarray], start: int, crops: np.ndarray) -> None:
        part = torch.from_numpy(coeffs[start:start + len(crops)]).to(device)
        with torch.no_grad():
            out = blender.blend(to_signed(crops).to(device), part, params[start:start + len(crops)], box)
        arrays["crops"][start:start + len(crops)] = crops
        arrays["blended"][start:start + len(crops)] = to_uint8(out.blended)
        arrays["masks"][start:start + len(crops)] = (out.mask[:, 0] * 255).round().to(torch.uint8).cpu().numpy()

    shapes = {"crops": (count, size, size, 3), "blended": (count, size, size, 3), "masks": (count, size, size)}
    write_frame_cache(clip.video_path, count, {name: (entry.path(name), shapes[name]) for name in CACHE_FILES},
                      lambda frame: crop_portrait(frame, box, size), fill, batch, folder / "key.json", key)
    logger.info("%s: GSmoothFace TAFT pairs cached (%d frames at %d px, box %s)", clip.name, count, size, box)
    return entry


def build_taft_clips(store: Any, split: str, blender: FaceBlender, cache_dir: str | Path | None,
                     box_settings: tuple[float, float], device: torch.device) -> list[TaftClip]:
    """Every clip of ``split`` with at least two frames with a face, cached; DataError when none has them."""
    root = Path(cache_dir) if cache_dir else Path(store.root) / "cache" / "gsmoothface_taft"
    clips = [taft_cache(clip, blender, root, box_settings, device) for clip in store.split(split)]
    clips = [clip for clip in clips if clip.valid.sum() >= 2]
    if not clips:
        raise DataError(f"{store.root} split {split!r}: no clip with two frames with a face for GSmoothFace's TAFT")
    return clips


class TaftPairs(SeededMemmapDataset):
    """TAFT's items: ``reference``, ``blended``, ``target`` (3, S, S) in [-1, 1] and ``mask`` (1, S, S) in [0, 1]."""

    def __init__(self, clips: list[TaftClip], seed: int | None = None):
        self.clips, self.seed = clips, seed
        self.index = [(c, int(f)) for c, clip in enumerate(clips) for f in np.flatnonzero(clip.valid)]
        self.others = [np.flatnonzero(clip.valid) for clip in clips]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        slot, frame = self.index[index]
        clip = self.clips[slot]
        crops = self.mapped(3 * slot, clip.path("crops"))
        blended = self.mapped(3 * slot + 1, clip.path("blended"))
        masks = self.mapped(3 * slot + 2, clip.path("masks"))
        others = self.others[slot][self.others[slot] != frame]
        reference = int(others[self.generator(index).integers(len(others))])
        return {"reference": to_signed(crops[reference]), "blended": to_signed(blended[frame]),
                "target": to_signed(crops[frame]),
                "mask": torch.from_numpy(np.array(masks[frame], np.float32) / 255.0)[None]}
