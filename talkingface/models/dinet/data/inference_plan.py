"""DINet inference as index and geometry logic (no model): frame/audio alignment, windows, paste-back.

Official source: ``inference.py`` (ping-pong extension, edge padding by 2, windows over the padded
sequence, references, the paste of the top ``3r`` rows). See docs/dinet_data.md.

Index arithmetic. The official loop runs ``clip_end`` over ``5 .. L - 1`` of the sequences padded
by 2 (``L = N + 4``); output frame ``m = clip_end - 5`` shows padded frame ``clip_end - 3`` =
unpadded ``m``, its radius uses padded landmarks ``[m, m + 5)`` = unpadded ``[m - 2, m + 3)`` with
edge clamping, and its audio is padded ``[m, m + 5)`` = features ``[m - 2, m + 3)`` clamped.
Here the windows are written directly as clamped unpadded indices, which is the same thing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .crops import Box4, resize_bilinear
from .references import inference_reference_indices

AUDIO_FPS = 25.0
PAD = 2
INFERENCE_SCALE = 1.05


def ping_pong(num_frames: int, length: int) -> np.ndarray:
    """Source frame of each of ``length`` outputs: ``0..n-1, n-1..0, 0..n-1, ...`` truncated to ``length``.

    As the official ``frames + frames[::-1]`` cycle, the turning frames repeat (``.., n-1, n-1, ..``).
    ``length <= n`` is plain trimming to ``0..length-1``.
    """
    if num_frames < 1:
        raise ValueError("the source video has no frames")
    cycle = np.concatenate([np.arange(num_frames), np.arange(num_frames)[::-1]])
    return np.resize(cycle, length).astype(np.int64)


def edge_pad(values: np.ndarray, pad: int = PAD) -> np.ndarray:
    """``values`` with the first and last entry repeated ``pad`` times (``np.pad(mode='edge')``)."""
    values = np.asarray(values)
    return np.pad(values, [(pad, pad)] + [(0, 0)] * (values.ndim - 1), mode="edge")


def _round_half_up(values: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(values, dtype=np.float64) + 0.5).astype(np.int64)


def output_frame_count(num_audio_frames: int, fps: float = AUDIO_FPS) -> int:
    """Output frames at the source ``fps`` covering ``num_audio_frames`` 25 fps features (``T`` at 25 fps)."""
    return max(int(math.floor(num_audio_frames * fps / AUDIO_FPS + 0.5)), 1) if num_audio_frames else 0


def audio_frame_index(num_output_frames: int, fps: float = AUDIO_FPS, num_audio_frames: int | None = None
                      ) -> np.ndarray:
    """Feature index of output frame ``k`` (time ``k / fps``): ``round(k / fps * 25)``, half up, clamped."""
    index = _round_half_up(np.arange(num_output_frames) * AUDIO_FPS / fps)
    if num_audio_frames is not None:
        index = np.clip(index, 0, num_audio_frames - 1)
    return index


@dataclass(frozen=True)
class InferencePlan:
    """Per output frame ``m``: the source frame, its landmark window, its audio index and window."""

    fps: float
    source_index: np.ndarray  # (N,) source video frame of output m
    landmark_windows: np.ndarray  # (N, 5) source frames whose landmarks give output m's radius (scale 1.05)
    audio_index: np.ndarray  # (N,) 25 fps feature index at output m's time
    audio_windows: np.ndarray  # (N, 5) feature indices fed to the generator for output m

    def __len__(self) -> int:
        return len(self.source_index)


def plan_inference(num_source_frames: int, num_audio_frames: int, fps: float = AUDIO_FPS) -> InferencePlan:
    """The whole alignment for a source video of ``n`` frames at ``fps`` and ``T`` 25 fps features.

    The output keeps the source rate: ``N = round(T * fps / 25)`` frames (``N = T`` at 25 fps), the
    video ping-pongs (or is trimmed) to ``N`` frames, output ``m`` hears feature ``round(m / fps * 25)``.
    """
    if num_audio_frames < 1:
        raise ValueError("the driving audio has no feature frames")
    count = output_frame_count(num_audio_frames, fps)
    source = ping_pong(num_source_frames, count)
    offsets = np.arange(-PAD, PAD + 1)
    positions = np.clip(np.arange(count)[:, None] + offsets, 0, count - 1)  # = padded [m, m + 5)
    audio = audio_frame_index(count, fps, num_audio_frames)
    audio_windows = np.clip(audio[:, None] + offsets, 0, num_audio_frames - 1)
    return InferencePlan(float(fps), source, source[positions], audio, audio_windows)


@dataclass(frozen=True)
class ReferencePlan:
    """One inference reference: the source frame to crop, its landmark window and its random scale."""

    source_frame: int
    landmark_window: np.ndarray  # (5,) source frame indices
    scale: float


def plan_references(plan: InferencePlan, rng: np.random.Generator) -> list[ReferencePlan]:
    """The 5 references, chosen like ``inference.py`` but seeded (``references.inference_reference_indices``)."""
    picks, scales = inference_reference_indices(len(plan), rng)
    return [ReferencePlan(int(plan.source_index[u]), plan.landmark_windows[u], float(s))
            for u, s in zip(picks, scales)]


# ---- paste-back ------------------------------------------------------------------------------
def box_radius(box: Box4) -> int:
    """The radius ``r`` of a ``crops.crop_box`` box (``3r + r//4`` rows, ``2r + 2(r//4)`` columns)."""
    top, bottom, left, right = box
    radius = round((bottom - top) * 4 / 13)
    if (bottom - top, right - left) != (3 * radius + radius // 4, 2 * radius + 2 * (radius // 4)):
        raise ValueError(f"{box} is not a DINet crop box (3.25r x 2.5r with r a multiple of 4)")
    return radius


def official_paste_region(box: Box4) -> Box4:
    """Rows ``[y29 - r, y29 + 2r)``, cols ``[x33 - 1.25r, x33 + 1.25r)``: the top ``3r`` rows of the crop."""
    top, _, left, right = box
    return top, top + 3 * box_radius(box), left, right


def _face_pixels(face: np.ndarray, box: Box4) -> np.ndarray:
    """The generated face (uint8, or float in [0, 1] as the model outputs) resized to the box, in 0..255."""
    face = np.asarray(face)
    values = face.astype(np.float32) if face.dtype == np.uint8 else np.asarray(face, np.float32) * 255.0
    top, bottom, left, right = box
    return resize_bilinear(values, (bottom - top, right - left))


def _check_inside(frame: np.ndarray, box: Box4) -> None:
    top, bottom, left, right = box
    if top < 0 or left < 0 or bottom > frame.shape[0] or right > frame.shape[1]:
        raise ValueError(f"paste box {box} is not inside the {frame.shape[0]}x{frame.shape[1]} frame")


def _to_frame_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint8:
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return values.astype(dtype)


def paste_official(frame: np.ndarray, face: np.ndarray, box: Box4) -> np.ndarray:
    """``inference.py``: the face resized to the crop box, its top ``3r`` rows replacing the frame's.

    A hard rectangle, no blending; rows below ``y29 + 2r`` keep the original frame. Returns a copy.
    (Official: the float face is truncated into the uint8 frame; here it is rounded.)
    """
    _check_inside(frame, box)
    rows = 3 * box_radius(box)
    pixels = _face_pixels(face, box)
    top, _, left, right = box
    out = frame.copy()
    out[top:top + rows, left:right] = _to_frame_dtype(pixels[:rows], frame.dtype)
    return out


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ramp(length: int, width_start: float, width_end: float) -> np.ndarray:
    """1-D alpha along one axis: 0 -> 1 over ``width_start`` pixels from the start, 1 -> 0 at the end."""
    centres = np.arange(length) + 0.5
    start = _smoothstep(centres / width_start) if width_start > 0 else np.ones(length)
    end = _smoothstep((length - centres) / width_end) if width_end > 0 else np.ones(length)
    return start * end


def feather_mask(box: Box4, feather: float) -> np.ndarray:
    """``(crop_h, crop_w)`` float32 alpha over the whole crop box: 1 over the mouth box, smoothly to ~0 at the border.

    The mouth box is crop rows ``[r, 3r)``, cols ``[r/4, r/4 + 2r)``, leaving margins ``r`` (top)
    and ``r/4`` (bottom, left, right); each side ramps (smoothstep of the distance from the border
    to the pixel centre) over ``min(feather, margin)`` pixels, so alpha is exactly 1 on the mouth box.
    """
    top, bottom, left, right = box
    radius = box_radius(box)
    quarter = radius // 4
    feather = max(float(feather), 0.0)
    rows = _ramp(bottom - top, min(feather, radius), min(feather, quarter))
    cols = _ramp(right - left, min(feather, quarter), min(feather, quarter))
    return (rows[:, None] * cols[None, :]).astype(np.float32)


def paste_feathered(frame: np.ndarray, face: np.ndarray, box: Box4, feather: float) -> np.ndarray:
    """Alpha-blend the generated face into the crop box with ``feather_mask``; returns a copy.

    Unlike the official paste this uses the whole crop box (3.25r rows): the official ``3r`` rows end
    exactly at the mouth box's bottom edge, so a blend that is 1 on the mouth and seamless needs the
    generator's ``r/4`` rows below it. Outside the box the frame is unchanged; ``feather=0`` is a
    hard paste of the whole crop.
    """
    _check_inside(frame, box)
    top, bottom, left, right = box
    alpha = feather_mask(box, feather)[:, :, None]
    region = frame[top:bottom, left:right].astype(np.float32)
    blended = alpha * _face_pixels(face, box) + (1.0 - alpha) * region
    out = frame.copy()
    out[top:bottom, left:right] = _to_frame_dtype(blended, frame.dtype)
    return out
