"""VideoReTalking's training data in the Wav2Lip style its ``utils/hparams.py`` points to (docs/videoretalking.md,
"Training"): the lower-face box of every frame, per-clip face crops cached once, 5-frame windows.

The release finds faces with Wav2Lip's S3FD and pads the box 20 px downwards (``--pads 0 20 0 0``), then smooths each
box with the next 4 frames'. We take the box from the toolkit's 68 landmarks (``face_box``), the same rule in training
and dubbing: their bounding box, its top raised by ``BROW_RAISE`` of its height (an S3FD box reaches above the brows),
the pads added, clipped to the frame, averaged over the frame's landmark window.

A training item (``LNetWindows``) is Wav2Lip's: 5 consecutive frames of a clip (the target, BGR in [0, 1]), the same
frames with the lower half zeroed, 5 reference frames from another window of the same clip at least ``5`` frames away,
the per-frame mel chunks ``(5, 1, 80, 16)`` and the window's own mel chunk for the SyncNet expert (``sync_mel``; the
chunk of the first frame covers the window's 0.2 s). ``SyncWindows`` gives the expert's pairs: the lower halves of a
window with its own chunk (label 1) or with a chunk at least 5 frames away (label 0), half and half.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ...errors import DataError
from ..common.datasets import SeededMemmapDataset
from ..dinet.data.cache import cached_crops
from ..dinet.data.clips import ClipCrop, ClipPlan
from ..dinet.data.crops import crop_face

logger = logging.getLogger(__name__)

WINDOW = 5  # frames per training window (Wav2Lip's syncnet_T)
BROW_RAISE = 0.2  # the box's top raised by this share of the landmark box height
MEL_FEATURE = "mel"  # the store's per-frame (80, 16) Wav2Lip mel chunks
Box4 = tuple[int, int, int, int]


def frame_box(landmarks: np.ndarray, frame_size: tuple[int, int], pads: Sequence[float]) -> np.ndarray:
    """``(top, bottom, left, right)`` float box of one frame's ``(68, 2)`` landmarks (module docstring rule)."""
    xs, ys = landmarks[:, 0], landmarks[:, 1]
    height = float(ys.max() - ys.min())
    pad_top, pad_bottom, pad_left, pad_right = (float(p) for p in pads)
    top = max(0.0, ys.min() - BROW_RAISE * height - pad_top)
    bottom = min(float(frame_size[0]), ys.max() + pad_bottom)
    left = max(0.0, xs.min() - pad_left)
    right = min(float(frame_size[1]), xs.max() + pad_right)
    return np.array([top, bottom, left, right])


def face_box(landmarks: np.ndarray, valid: np.ndarray, window: np.ndarray, frame_size: tuple[int, int],
             pads: Sequence[float]) -> Box4 | None:
    """The integer box of a frame: the mean of ``frame_box`` over the valid frames of its landmark ``window``
    (None when none of them has a face or the box is empty)."""
    frames = [int(w) for w in window if valid[int(w)]]
    if not frames:
        return None
    box = np.mean([frame_box(landmarks[f], frame_size, pads) for f in frames], axis=0)
    top, bottom, left, right = (int(round(v)) for v in box)
    if bottom - top < 2 or right - left < 2:
        return None
    return top, bottom, left, right


def centred_window(index: int, count: int, width: int = WINDOW) -> np.ndarray:
    """Frames ``index - width//2 .. index + width//2`` clamped to ``[0, count)``."""
    return np.clip(np.arange(index - width // 2, index + width // 2 + 1), 0, count - 1)


def clip_boxes(landmarks: np.ndarray, valid: np.ndarray, frame_size: tuple[int, int],
               pads: Sequence[float]) -> list[Box4 | None]:
    """Every frame's box (None where the frame has no face)."""
    count = len(landmarks)
    return [face_box(landmarks, valid, centred_window(i, count), frame_size, pads) if valid[i] else None
            for i in range(count)]


def lower_half_masked(faces: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` faces with rows ``>= H // 2`` zeroed (the release's ``img_masked[:, H//2:] = 0``)."""
    masked = faces.clone()
    masked[..., faces.shape[-2] // 2:, :] = 0
    return masked


def to_bgr_tensor(crops: np.ndarray) -> torch.Tensor:
    """``(..., H, W, 3)`` RGB uint8 -> ``(..., 3, H, W)`` BGR float32 in [0, 1] (Wav2Lip's cv2 convention)."""
    return torch.from_numpy(np.array(crops[..., ::-1], dtype=np.float32) / 255.0).movedim(-1, -3)


class _StoredFaces:
    """One usable clip: its crop file, mel chunks and the first frames of its usable windows."""

    def __init__(self, name: str, crops_path: Path, mels: np.ndarray, starts: np.ndarray):
        self.name, self.crops_path, self.mels, self.starts = name, crops_path, mels, starts


class FaceWindows(SeededMemmapDataset):
    """Per-clip face crops at ``size`` (cached in ``cache_dir``) and their 5-frame windows; items per subclass."""

    def __init__(self, store: Any, split: str, size: int, pads: Sequence[float] = (0, 20, 0, 0),
                 seed: int | None = None, cache_dir: str | Path | None = None, repeats: int = 1):
        self.size, self.seed, self.repeats = int(size), seed, max(int(repeats), 1)
        self.cache_dir = Path(cache_dir) if cache_dir else Path(store.root) / "cache" / "videoretalking_faces"
        self.clips: list[_StoredFaces] = []
        for clip in store.split(split):
            entry = self._load(clip, pads)
            if entry is not None:
                self.clips.append(entry)
        if not self.clips:
            raise DataError(f"{store.root} split {split!r}: no clip has two {WINDOW}-frame windows with a face in "
                            f"every frame {WINDOW} frames apart (VideoReTalking's training windows)")
        self.index = [(c, s) for c, entry in enumerate(self.clips) for s in entry.starts]

    def _load(self, clip: Any, pads: Sequence[float]) -> _StoredFaces | None:
        landmarks = clip.landmarks()
        mels = clip.feature(MEL_FEATURE)
        if mels.ndim != 3 or mels.shape[1:] != (80, 16):
            raise DataError(f"{clip.root}: feature {MEL_FEATURE!r} has shape {mels.shape[1:]}, expected (80, 16) "
                            f"Wav2Lip mel chunks per frame")
        count = min(len(landmarks), len(mels))
        valid = clip.face_valid(landmarks)[:count]
        frame_size = clip.frame_size()
        boxes = clip_boxes(landmarks[:count], valid, frame_size, pads)
        good = np.array([b is not None for b in boxes])
        starts = np.array([s for s in range(count - WINDOW + 1) if good[s:s + WINDOW].all()], np.int64)
        if len(starts) < 2 or starts.max() - starts.min() < WINDOW:
            logger.info("%s: skipped, too few %d-frame windows with a face in every frame", clip.name, WINDOW)
            return None
        known = np.flatnonzero(good)
        filled = [boxes[i] if good[i] else boxes[int(known[np.argmin(np.abs(known - i))])] for i in range(count)]
        plan = ClipPlan([ClipCrop(0, 0, 1.0, 0, tuple(filled))])
        path = cached_crops(clip.video_path, f"{clip.name}.{self.size}", plan, (self.size, self.size),
                            self.cache_dir, crop_face)
        return _StoredFaces(clip.name, path, mels[:count].astype(np.float32), starts)

    def __len__(self) -> int:
        return len(self.index) * self.repeats

    def _window(self, index: int) -> tuple[_StoredFaces, np.ndarray, int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        slot, start = self.index[index % len(self.index)]
        return self.clips[slot], self.mapped(slot, self.clips[slot].crops_path)[0], int(start)

    @staticmethod
    def far_start(entry: _StoredFaces, start: int, rng: np.random.Generator) -> int:
        """A window start of the same clip at least ``WINDOW`` frames from ``start``."""
        far = entry.starts[np.abs(entry.starts - start) >= WINDOW]
        return int(far[rng.integers(len(far))])

    def faces(self, crops: np.ndarray, start: int) -> torch.Tensor:
        """``(3, 5, S, S)`` BGR frames ``start .. start + 4``."""
        return to_bgr_tensor(crops[start:start + WINDOW]).transpose(0, 1)


class LNetWindows(FaceWindows):
    """L-Net (and E-Net) training items; see the module docstring."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        entry, crops, start = self._window(index)
        rng = self.generator(index)
        target = self.faces(crops, start)
        reference = self.faces(crops, self.far_start(entry, start, rng))
        mels = torch.from_numpy(entry.mels[start:start + WINDOW])[:, None]
        return {"target": target, "inputs": torch.cat([lower_half_masked(target.transpose(0, 1)).transpose(0, 1),
                                                        reference]),
                "mels": mels, "sync_mel": torch.from_numpy(entry.mels[start])[None]}


class SyncWindows(FaceWindows):
    """SyncNet-expert pairs; see the module docstring."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        entry, crops, start = self._window(index)
        rng = self.generator(index)
        in_sync = bool(rng.random() < 0.5)
        audio_start = start if in_sync else self.far_start(entry, start, rng)
        faces = self.faces(crops, start)
        return {"faces": faces, "mel": torch.from_numpy(entry.mels[audio_start])[None],
                "label": torch.tensor(float(in_sync))}


def sync_faces(faces: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 5, S, S)`` -> the expert's input ``(B, 15, S/2, S)``: the lower halves, frames on channels."""
    lower = faces[..., faces.shape[-2] // 2:, :]
    return torch.cat(lower.unbind(2), dim=1)

