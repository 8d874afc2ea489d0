"""A side-by-side PNG strip: evenly spaced frames of a generated video above the same frames of its reference."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw

from ..errors import ConfigError, MediaError
from ..io_utils import atomic_write
from ..media import iter_frames, probe_video

LABEL_WIDTH = 24  # pixels of the label column on the left (text drawn rotated)


def strip_indices(frame_count: int, frames: int) -> list[int]:
    """``frames`` evenly spaced indices in ``[0, frame_count)`` from the first to the last frame (fewer when
    the video is shorter)."""
    if frame_count <= 0:
        return []
    count = min(frames, frame_count)
    return sorted({int(round(i)) for i in np.linspace(0, frame_count - 1, count)})


def _pick(path: Path, indices: list[int]) -> list[np.ndarray]:
    """The frames of ``path`` at ``indices`` in one streaming pass (a video shorter than its header says
    repeats its last frame)."""
    wanted, picked, last = set(indices), {}, None
    for index, frame in enumerate(iter_frames(path)):
        last = frame
        if index in wanted:
            picked[index] = frame
        if index >= indices[-1]:
            break
    if last is None:
        raise MediaError(f"{path}: no video frame could be decoded for the strip")
    return [picked.get(index, last) for index in indices]


def _label(text: str, height: int) -> np.ndarray:
    """A ``(height, LABEL_WIDTH, 3)`` white column with ``text`` written bottom to top."""
    image = Image.new("RGB", (height, LABEL_WIDTH), "white")
    ImageDraw.Draw(image).text((4, 6), text, fill="black")
    return np.asarray(image.rotate(90, expand=True))


def _row(frames: Iterable[np.ndarray], height: int, text: str) -> np.ndarray:
    cells = []
    for frame in frames:
        if frame.shape[0] != height:
            width = int(round(frame.shape[1] * height / frame.shape[0]))
            frame = np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))
        cells.append(frame)
    return np.concatenate([_label(text, height), *cells], axis=1)


def write_strip(generated_path: str | Path, reference_path: str | Path, out_png: str | Path, frames: int = 8) -> Path:
    """Write ``out_png`` (atomically): ``frames`` evenly spaced frames of the generated video in the top row
    and the same frame indices of the reference (ground truth) below, each row labelled. Frames are taken over
    the shorter video; a reference of another size is scaled to the generated height."""
    if frames < 1:
        raise ConfigError(f"write_strip: frames must be at least 1, got {frames} (for {out_png})")
    generated_path, reference_path = Path(generated_path), Path(reference_path)
    count = min(probe_video(generated_path).frame_count, probe_video(reference_path).frame_count)
    indices = strip_indices(count, frames)
    if not indices:
        raise MediaError(f"{generated_path} or {reference_path} has no frames to put in the strip {out_png}")
    top = _pick(generated_path, indices)
    height = top[0].shape[0]
    bottom = _pick(reference_path, indices)
    rows = [_row(top, height, "generated"), _row(bottom, height, "ground truth")]
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    image = Image.fromarray(np.concatenate(rows, axis=0).astype(np.uint8))
    return atomic_write(out_png, lambda tmp: image.save(tmp, format="PNG"))
