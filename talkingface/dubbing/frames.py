"""Source frames in the order a dub shows them, with bounded memory (forward runs stream, backward runs are
decoded in blocks and played reversed)."""
from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Iterator

import numpy as np

from ..media import iter_frames


def _runs(order: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """Split source indices into runs ``(first, last, step)`` of step +1 or -1."""
    i = 0
    while i < len(order):
        step = int(order[i + 1] - order[i]) if i + 1 < len(order) else 1
        step = step if step in (1, -1) else 1
        j = i + 1
        while j < len(order) and order[j] - order[j - 1] == step:
            j += 1
        yield int(order[i]), int(order[j - 1]), step
        i = j


def frames_in_order(path: Path, fps: float, order: np.ndarray, block: int) -> Iterator[np.ndarray]:
    """Source frames ``order[0], order[1], ...`` (ascending and descending runs), never holding more than
    ``block`` frames: forward runs stream, backward runs are decoded in blocks and played reversed."""
    last: tuple[int, np.ndarray] | None = None
    for first, end, step in _runs(order):
        if first == end and last is not None and last[0] == first:
            yield last[1]
            continue
        if step == 1:
            for index, frame in enumerate(iter_frames(path, fps=fps)):
                if index >= first:
                    last = (index, frame)
                    yield frame
                if index >= end:
                    break
            continue
        high = first
        while high >= end:
            low = max(end, high - block + 1)
            kept: deque = deque(maxlen=high - low + 1)
            for index, frame in enumerate(iter_frames(path, fps=fps)):
                if index >= low:
                    kept.append(frame)
                if index >= high:
                    break
            for offset, frame in enumerate(reversed(kept)):
                last = (high - offset, frame)
                yield frame
            high = low - 1


def fetch_frames(path: Path, fps: float, wanted: set[int]) -> dict[int, np.ndarray]:
    """The source frames ``wanted`` (one decode up to the last of them)."""
    found: dict[int, np.ndarray] = {}
    for index, frame in enumerate(iter_frames(path, fps=fps)):
        if index in wanted:
            found[index] = frame
        if len(found) == len(wanted):
            break
    return found
