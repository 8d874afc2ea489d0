"""A PNG strip: the same evenly spaced frames of several videos (generated, ground truth, ...), one labelled row each."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

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


def write_strip(rows: Sequence[tuple[str, str | Path]], out_png: str | Path, frames: int = 8) -> Path:
    """Write ``out_png`` (atomically): one labelled row per ``(label, video)`` in ``rows`` (e.g. generated,
    then ground truth), each showing the same ``frames`` evenly spaced frame indices. Frames are taken over
    the shortest video; rows of another size are scaled to the first row's height."""
    if frames < 1:
        raise ConfigError(f"write_strip: frames must be at least 1, got {frames} (for {out_png})")
    if not rows:
        raise ConfigError(f"write_strip: no videos to put in the strip {out_png}")
    paths = [Path(path) for _, path in rows]
    count = min(probe_video(path).frame_count for path in paths)
    indices = strip_indices(count, frames)
    if not indices:
        raise MediaError(f"{' or '.join(map(str, paths))} has no frames to put in the strip {out_png}")
    height = None
    images = []
    for (label, _), path in zip(rows, paths):
        picked = _pick(path, indices)
        height = height or picked[0].shape[0]
        images.append(_row(picked, height, label))
    width = max(image.shape[1] for image in images)
    images = [np.pad(image, ((0, 0), (0, width - image.shape[1]), (0, 0)), constant_values=255) for image in images]
    image = Image.fromarray(np.concatenate(images, axis=0).astype(np.uint8))
    return atomic_write(out_png, lambda tmp: image.save(tmp, format="PNG"))
