"""The dubbing plan (no model): which source frame, landmark window and audio window each output frame uses.

The rules are DINet's ``inference.py`` (ping-pong extension, edge padding by 2, windows over the padded
sequence), which LawDNet keeps; docs/dinet_data.md derives them.

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

AUDIO_FPS = 25.0
PAD = 2


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
    landmark_windows: np.ndarray  # (N, 5) source frames whose landmarks give output m's crop (e.g. its radius)
    audio_index: np.ndarray  # (N,) 25 fps feature index at output m's time
    audio_windows: np.ndarray  # (N, 2r + 1) feature indices fed to the generator for output m (r = 2 by default)

    def __len__(self) -> int:
        return len(self.source_index)


AUDIO_PADS = ("edge", "zero")


def plan_inference(num_source_frames: int, num_audio_frames: int, fps: float = AUDIO_FPS, audio_radius: int = PAD,
                   audio_pad: str = "edge") -> InferencePlan:
    """The whole alignment for a source video of ``n`` frames at ``fps`` and ``T`` 25 fps features.

    The output keeps the source rate: ``N = round(T * fps / 25)`` frames (``N = T`` at 25 fps), the
    video ping-pongs (or is trimmed) to ``N`` frames, output ``m`` hears feature ``round(m / fps * 25)``.
    Its audio window is that feature ``± audio_radius``; indices past the audio's ends are clamped (``audio_pad``
    ``edge``, DINet) or point at ``T``, a zero row the loop appends (``zero``: AudioDVP's zero-padded windows).
    """
    if audio_pad not in AUDIO_PADS:
        raise ValueError(f"audio_pad must be one of {AUDIO_PADS}, got {audio_pad!r}")
    if num_audio_frames < 1:
        raise ValueError("the driving audio has no feature frames")
    count = output_frame_count(num_audio_frames, fps)
    source = ping_pong(num_source_frames, count)
    offsets = np.arange(-PAD, PAD + 1)
    positions = np.clip(np.arange(count)[:, None] + offsets, 0, count - 1)  # = padded [m, m + 5)
    audio = audio_frame_index(count, fps, num_audio_frames)
    windows = audio[:, None] + np.arange(-audio_radius, audio_radius + 1)
    inside = (windows >= 0) & (windows < num_audio_frames)
    if audio_pad == "edge":
        audio_windows = np.clip(windows, 0, num_audio_frames - 1)
    else:
        audio_windows = np.where(inside, windows, num_audio_frames)
    return InferencePlan(float(fps), source, source[positions], audio, audio_windows)
