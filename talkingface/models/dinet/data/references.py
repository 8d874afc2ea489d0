"""DINet's choice of the source frame and the five reference frames, seeded (see docs/dinet_data.md).

The official code draws with Python's global ``random``; here every draw comes from a
``numpy.random.Generator`` passed in, so a choice is a pure function of its seed.
Training indices refer to the accepted 9-frame clips of one stored clip (``clips.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REFERENCES = 5
CLIP_LENGTH = 9
SOURCE_FRAMES = (2, 3, 4, 5, 6)  # frames of a 9-frame clip with a full 5-frame audio window inside it
INFERENCE_SCALE_RANGE = (1.05, 1.15)


@dataclass(frozen=True)
class FramePick:
    """A frame-stage sample: the source ``(clip, frame)`` and five reference ``(clip, frame)`` pairs."""

    source_clip: int
    source_frame: int
    references: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ClipPick:
    """A clip-stage sample: one source clip (its frames 2..6) and, per source frame, 5 ``(clip, frame)`` refs."""

    source_clip: int
    references: tuple[tuple[tuple[int, int], ...], ...]  # [source frame][reference] -> (clip, frame)


def frame_stage_pick(num_clips: int, rng: np.random.Generator) -> FramePick:
    """``dataset_DINet_frame.py``: 6 distinct clips (1 source + 5 refs); source frame uniform in 2..6,
    each reference a uniform frame 0..8 of its clip. Needs ``num_clips >= 6``."""
    if num_clips < 1 + REFERENCES:
        raise ValueError(f"the frame stage needs at least 6 accepted 9-frame clips, got {num_clips}")
    anchors = rng.choice(num_clips, 1 + REFERENCES, replace=False)
    source_frame = int(rng.integers(SOURCE_FRAMES[0], SOURCE_FRAMES[-1] + 1))
    ref_frames = rng.integers(0, CLIP_LENGTH, size=REFERENCES)
    refs = tuple((int(c), int(f)) for c, f in zip(anchors[1:], ref_frames))
    return FramePick(int(anchors[0]), source_frame, refs)


def clip_stage_pick(num_clips: int, rng: np.random.Generator) -> ClipPick:
    """``dataset_DINet_clip.py``: one source clip; for each source frame 2..6 its own 5 distinct
    reference clips (the source clip may be among them), each with a uniform frame 0..8.
    Needs ``num_clips >= 5``."""
    if num_clips < REFERENCES:
        raise ValueError(f"the clip stage needs at least 5 accepted 9-frame clips, got {num_clips}")
    source = int(rng.integers(num_clips))
    per_frame = []
    for _ in SOURCE_FRAMES:
        anchors = rng.choice(num_clips, REFERENCES, replace=False)
        frames = rng.integers(0, CLIP_LENGTH, size=REFERENCES)
        per_frame.append(tuple((int(c), int(f)) for c, f in zip(anchors, frames)))
    return ClipPick(source, tuple(per_frame))


def inference_reference_indices(num_output_frames: int, rng: np.random.Generator,
                                count: int = REFERENCES) -> tuple[np.ndarray, np.ndarray]:
    """Reference positions in the (unpadded) output sequence and their random crop scales.

    Official (``inference.py``): ``j = random.sample(range(5, L - 2), 5)`` over the sequence padded
    by 2 at both ends (``L = T + 4``); the frame read is padded ``j - 3`` = unpadded ``u = j - 5``, so
    ``u`` is drawn without replacement from ``[0, T - 4]``; its radius uses padded landmarks
    ``[j - 5, j)`` = unpadded ``[u - 2, u + 3)`` (edge-clamped) with scale ``1.05 + U[0, 0.1)``.
    Returns ``(u (count,), scales (count,))``. Deviation: when ``T < 8`` the official call fails;
    here ``u`` is then drawn with replacement from ``[0, T)``.
    """
    if num_output_frames < 1:
        raise ValueError("need at least one output frame")
    candidates = np.arange(0, num_output_frames - 3)  # = range(5, T + 2) - 5
    if len(candidates) >= count:
        picks = rng.choice(candidates, count, replace=False)
    else:
        picks = rng.integers(0, num_output_frames, size=count)
    low, high = INFERENCE_SCALE_RANGE
    scales = low + rng.random(count) * (high - low)
    return picks.astype(np.int64), scales
