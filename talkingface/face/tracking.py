"""Follow one face through a video: detect, track landmarks between detections, fill short gaps, smooth.

The rules are described in ``docs/faces.md``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ..errors import ConfigError, DataError
from .base import Box, FaceBackend
from .crops import crop_and_resize

MIN_TRACK_IOU = 0.5  # tracked landmark box vs the previous frame's; below this the tracker re-detects
MIN_TRACK_SIMILARITY = 0.5  # correlation of the face crop with the previous frame's; below this it re-detects
APPEARANCE_SIZE = 32  # side of the grayscale face crop compared between frames
SMOOTHING_ORDER = 2  # Savitzky–Golay polynomial order: keeps mouth-opening peaks that a plain average flattens


@dataclass
class FaceTrack:
    """One face through a video: ``landmarks (T, 68, 2) float32`` (NaN where not valid), ``valid (T,) bool``,
    ``boxes (T, 4) float32`` (the landmarks' bounding boxes, left/top/right/bottom, NaN where not valid),
    and ``events``, human-readable notes on missing frames and choices made."""

    landmarks: np.ndarray
    valid: np.ndarray
    boxes: np.ndarray
    events: list[str] = field(default_factory=list)

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray, valid: np.ndarray, events: Iterable[str] = ()) -> "FaceTrack":
        """A track from ``(T, 68, 2)`` landmarks and a ``(T,)`` mask: invalid frames become NaN, boxes are derived."""
        valid = np.asarray(valid, dtype=bool).copy()
        landmarks = np.array(landmarks, dtype=np.float32)
        landmarks[~valid] = np.nan
        boxes = np.full((len(valid), 4), np.nan, dtype=np.float32)
        if valid.any():
            boxes[valid] = np.concatenate([landmarks[valid].min(axis=1), landmarks[valid].max(axis=1)], axis=1)
        return cls(landmarks, valid, boxes, list(events))

    def __len__(self) -> int:
        return len(self.valid)


def frames_label(first: int, last: int) -> str:
    """``'frame 7'`` or ``'frames 7-9'`` (inclusive, 0-based)."""
    return f"frame {first}" if first == last else f"frames {first}-{last}"


def frames_count(count: int) -> str:
    """``'1 frame'`` or ``'5 frames'``."""
    return f"{count} frame" if count == 1 else f"{count} frames"


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True in a ``(T,) bool`` mask, ``stop`` exclusive."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(start), int(stop)) for start, stop in zip(edges[::2], edges[1::2])]


def fill_gaps(track: FaceTrack, max_gap: int) -> FaceTrack:
    """Interpolate landmarks linearly across runs of at most ``max_gap`` missing frames between valid frames.

    Longer runs, and missing frames before the first or after the last valid frame, stay invalid.
    Every run of missing frames adds an event.
    """
    landmarks = track.landmarks.copy()
    valid = track.valid.copy()
    events = list(track.events)
    total = len(valid)
    for start, stop in runs(~track.valid):
        count = stop - start
        where, length = frames_label(start, stop - 1), frames_count(count)
        if start == 0:
            events.append(f"{where}: no face before the first face found ({length}): marked invalid")
        elif stop == total:
            events.append(f"{where}: no face after the last face found ({length}): marked invalid")
        elif count > max_gap:
            events.append(f"{where}: no face ({length}, longer than max_gap {max_gap}): marked invalid")
        else:
            weights = (np.arange(1, count + 1, dtype=np.float32) / (count + 1))[:, None, None]
            landmarks[start:stop] = (1 - weights) * landmarks[start - 1] + weights * landmarks[stop]
            valid[start:stop] = True
            events.append(f"{where}: no face ({length}, at most max_gap {max_gap}): landmarks interpolated")
    return FaceTrack.from_landmarks(landmarks, valid, events)


def savgol_smooth(values: np.ndarray, window: int, order: int = SMOOTHING_ORDER) -> np.ndarray:
    """Centred Savitzky–Golay smoothing along axis 0 of ``(T, ...)`` values, ``T >= window`` (odd).

    Each output is the value at the centre of a degree-``order`` least-squares polynomial fit over
    the ``window`` frames around it (the first and last ``window // 2`` frames use the fit of the
    first and last window), so there is no lag and polynomials up to ``order`` pass unchanged.
    """
    half = window // 2
    positions = np.arange(-half, half + 1, dtype=np.float64)
    vander = positions[:, None] ** np.arange(order + 1)
    projection = vander @ np.linalg.pinv(vander)  # row k: the fit's value at position k from the window's samples
    flat = values.reshape(len(values), -1).astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(flat, window, axis=0)  # (T - window + 1, D, window)
    smoothed = np.empty_like(flat)
    smoothed[half:len(flat) - half] = windows @ projection[half]
    smoothed[:half] = projection[:half] @ flat[:window]
    smoothed[len(flat) - half:] = projection[half + 1:] @ flat[-window:]
    return smoothed.reshape(values.shape).astype(values.dtype)


def smooth_track(track: FaceTrack, window: int) -> FaceTrack:
    """Savitzky–Golay smoothing (``savgol_smooth``) of each run of valid frames; runs shorter than ``window``
    and ``window <= 1`` leave the landmarks unchanged."""
    landmarks = track.landmarks.copy()
    if window > 1:
        for start, stop in runs(track.valid):
            if stop - start >= window:
                landmarks[start:stop] = savgol_smooth(landmarks[start:stop], window)
    return FaceTrack.from_landmarks(landmarks, track.valid, track.events)


def _appearance(frame: np.ndarray, box: Box) -> np.ndarray:
    """The face crop as a zero-mean, unit-norm grayscale vector (all zeros for a flat crop)."""
    crop = crop_and_resize(frame, box, APPEARANCE_SIZE).astype(np.float64).mean(axis=2).ravel()
    crop -= crop.mean()
    norm = np.linalg.norm(crop)
    return crop / norm if norm > 1e-6 else np.zeros_like(crop)


@dataclass
class _ChoiceRun:
    """Consecutive detections with several faces where the same rule picked the face, for one event."""

    first: int
    last: int
    rule: str
    fewest: int
    most: int
    low: float
    high: float

    def describe(self) -> str:
        faces = f"{self.fewest}" if self.fewest == self.most else f"{self.fewest}-{self.most}"
        where = frames_label(self.first, self.last)
        if self.rule == "overlap":
            overlap = f"{self.low:.2f}" if self.low == self.high else f"{self.low:.2f}-{self.high:.2f}"
            return f"{where}: {faces} faces, kept the one overlapping the track (IoU {overlap})"
        if self.rule == "largest, none overlaps":
            return f"{where}: {faces} faces, none overlaps the last known face: kept the largest"
        return f"{where}: {faces} faces, kept the largest"


class FaceTracker:
    """Follows one face through frames fed one at a time with ``update``; ``finish`` returns the ``FaceTrack``.

    ``detect_every``: run the detector on every n-th frame (and whenever the face was lost); in between,
    landmarks are tracked from the previous frame. ``max_gap``: longest run of missing frames that is
    interpolated. ``smoothing_window``: window in frames of the centred Savitzky–Golay filter (odd; 0 or 1
    turns it off). It uses future frames, so it runs in ``finish``.
    """

    def __init__(self, backend: FaceBackend, detect_every: int = 5, max_gap: int = 12, smoothing_window: int = 5):
        if detect_every < 1:
            raise ConfigError(f"detect_every must be at least 1, got {detect_every}")
        if max_gap < 0:
            raise ConfigError(f"max_gap must be at least 0, got {max_gap}")
        if smoothing_window < 0 or (smoothing_window > 1 and smoothing_window % 2 == 0):
            raise ConfigError(f"smoothing_window must be 0, 1 or an odd number of frames, got {smoothing_window}")
        self.backend = backend
        self.detect_every = detect_every
        self.max_gap = max_gap
        self.smoothing_window = smoothing_window
        self._landmarks: list[np.ndarray | None] = []
        self._events: list[str] = []
        self._previous: np.ndarray | None = None  # landmarks of the previous frame, None when it had no face
        self._appearance: np.ndarray | None = None  # its face crop (see _appearance)
        self._last_box: Box | None = None  # landmark box of the last frame with a face, kept across gaps
        self._detector_offset = (0.0, 0.0, 1.0, 1.0)  # detector box relative to the landmark box (see _detect)
        self._choices: _ChoiceRun | None = None

    def update(self, frame: np.ndarray) -> None:
        """Process the next ``(H, W, 3) uint8`` RGB frame."""
        index = len(self._landmarks)
        scheduled = self._previous is None or index % self.detect_every == 0
        found = None if scheduled else self._track(frame, index, report=True)
        if found is None:
            found = self._detect(frame, index)
        if found is None and scheduled and self._previous is not None:
            # the detector misses faces it found a moment ago (turned head, motion blur): try to follow it
            found = self._track(frame, index, report=False)
        if found is None:
            self._landmarks.append(None)
            self._previous = self._appearance = None
            return
        landmarks, self._appearance = found
        self._landmarks.append(landmarks)
        self._previous = landmarks
        self._last_box = Box.from_points(landmarks)

    def finish(self) -> FaceTrack:
        """The track of all frames seen: gaps filled (``max_gap``) and landmarks smoothed."""
        self._flush_choices()
        total = len(self._landmarks)
        valid = np.array([landmarks is not None for landmarks in self._landmarks], dtype=bool)
        if not valid.any():
            raise DataError(f"no face found in any of {total} frames")
        landmarks = np.full((total, 68, 2), np.nan, dtype=np.float32)
        landmarks[valid] = np.stack([points for points in self._landmarks if points is not None])
        track = FaceTrack.from_landmarks(landmarks, valid, self._events)
        return smooth_track(fill_gaps(track, self.max_gap), self.smoothing_window)

    def _tracking_box(self, previous: Box) -> Box:
        """The box the detector would give for a face whose landmarks span ``previous``."""
        dx, dy, width, height = self._detector_offset
        side = max(previous.width, previous.height)
        cx, cy = previous.center
        cx, cy = cx + dx * side, cy + dy * side
        return Box(cx - width * side / 2, cy - height * side / 2, cx + width * side / 2, cy + height * side / 2)

    def _track(self, frame: np.ndarray, index: int, report: bool) -> tuple[np.ndarray, np.ndarray] | None:
        previous = Box.from_points(self._previous)
        landmarks = np.asarray(self.backend.landmarks(frame, self._tracking_box(previous)), dtype=np.float32)
        box = Box.from_points(landmarks)
        appearance = _appearance(frame, box)
        overlap = box.iou(previous)
        similarity = float(appearance @ self._appearance)
        if overlap >= MIN_TRACK_IOU and similarity >= MIN_TRACK_SIMILARITY:
            return landmarks, appearance
        if report:
            self._events.append(f"frame {index}: tracked face lost (IoU {overlap:.2f} with the previous frame, "
                                f"appearance correlation {similarity:.2f}): detecting again")
        return None

    def _detect(self, frame: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray] | None:
        boxes = self.backend.detect(frame)
        if not boxes:
            self._flush_choices()
            return None
        detected = self._choose(boxes, index)
        landmarks = np.asarray(self.backend.landmarks(frame, detected), dtype=np.float32)
        box = Box.from_points(landmarks)
        # tracked frames hand the landmark model a box placed like the detector's, which it was trained on
        side = max(box.width, box.height, 1.0)
        (dcx, dcy), (lcx, lcy) = detected.center, box.center
        self._detector_offset = ((dcx - lcx) / side, (dcy - lcy) / side, detected.width / side, detected.height / side)
        return landmarks, _appearance(frame, box)

    def _choose(self, boxes: list[Box], index: int) -> Box:
        """The main face: the only one, else the one overlapping the last known face most, else the largest."""
        if len(boxes) == 1:
            self._flush_choices()
            return boxes[0]
        largest = max(boxes, key=lambda box: box.area)
        if self._last_box is None:
            self._note_choice(index, len(boxes), "largest", 0.0)
            return largest
        overlaps = [box.iou(self._last_box) for box in boxes]
        best = int(np.argmax(overlaps))
        if overlaps[best] == 0:
            self._note_choice(index, len(boxes), "largest, none overlaps", 0.0)
            return largest
        self._note_choice(index, len(boxes), "overlap", overlaps[best])
        return boxes[best]

    def _note_choice(self, index: int, faces: int, rule: str, overlap: float) -> None:
        run = self._choices
        if run is not None and run.rule == rule and index - run.last <= self.detect_every:
            run.last = index
            run.fewest, run.most = min(run.fewest, faces), max(run.most, faces)
            run.low, run.high = min(run.low, overlap), max(run.high, overlap)
            return
        self._flush_choices()
        self._choices = _ChoiceRun(index, index, rule, faces, faces, overlap, overlap)

    def _flush_choices(self) -> None:
        if self._choices is not None:
            self._events.append(self._choices.describe())
            self._choices = None


def track_frames(backend: FaceBackend, frames: Iterable[np.ndarray], detect_every: int = 5, max_gap: int = 12,
                 smoothing_window: int = 5) -> FaceTrack:
    """Run a ``FaceTracker`` over an iterable of ``(H, W, 3) uint8`` frames (streamed, never all held)."""
    tracker = FaceTracker(backend, detect_every=detect_every, max_gap=max_gap, smoothing_window=smoothing_window)
    for frame in frames:
        tracker.update(frame)
    return tracker.finish()
