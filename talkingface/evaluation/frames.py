"""Frame streams for metrics: one video or a (generated, reference) pair in chunks, optionally cut to the face.

Nothing here holds more than one chunk of frames, so evaluation memory does not grow with video
length. The region is ``evaluate.region``: ``full`` frames (default) or ``face`` crops. Face crops
are taken at the same place in both videos: a square of ``evaluate.face_crop_scale`` times the
longer side of the reference's 68-landmark box (tracked with ``preprocess.face_backend``, smoothed
like the preprocessing does), resized to ``evaluate.face_crop_size`` pixels. Frames where the reference
has no face are left out of the face-region metrics.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any, Iterator

import numpy as np

from ..errors import ConfigError, DataError
from ..face import FaceTrack, build_face_backend, crop_and_resize, square_box, track_frames
from .metric import VideoSample, config_option

CHUNK_FRAMES = 32
REGIONS = ("full", "face")


@dataclass(frozen=True)
class FaceRegion:
    """Where face crops come from: the face backend, the box scale and the output size."""

    backend: str = "dlib"
    scale: float = 1.25
    size: int = 224

    def track(self, reference: VideoSample, config: Any = None) -> FaceTrack:
        """The reference video's face track, computed once per video and kept in ``reference.cache``."""
        key = ("face_track", self.backend)
        if key not in reference.cache:
            backend = build_face_backend(self.backend, config)
            options = config_option(config, "preprocess", {})
            reference.cache[key] = track_frames(
                backend, reference.iter_frames(), detect_every=int(options.get("detect_every", 5)),
                max_gap=int(options.get("max_gap", 12)), smoothing_window=int(options.get("smoothing_window", 5)))
        return reference.cache[key]

    def crop(self, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return crop_and_resize(frame, square_box(landmarks, self.scale), self.size, fill=0)


def frame_region(config: Any) -> FaceRegion | None:
    """The ``evaluate.region`` of ``config``: None for full frames, else a ``FaceRegion``."""
    region = config_option(config, "evaluate.region", "full")
    if region not in REGIONS:
        raise ConfigError(f"evaluate.region must be one of {', '.join(REGIONS)}, got {region!r}")
    if region == "full":
        return None
    return FaceRegion(backend=config_option(config, "preprocess.face_backend", "dlib"),
                      scale=float(config_option(config, "evaluate.face_crop_scale", 1.25)),
                      size=int(config_option(config, "evaluate.face_crop_size", 224)))


def same_size(generated: VideoSample, reference: VideoSample) -> None:
    """DataError unless both videos' first frames have the same size."""
    a, b = next(generated.iter_frames()).shape, next(reference.iter_frames()).shape
    if a != b:
        raise DataError(f"{generated.path} frames are {a[:2]}, reference {reference.path} frames are {b[:2]}; "
                        f"they must have the same size")


def _stacked(frames: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    while chunk := list(islice(frames, size)):
        yield np.stack(chunk)


def video_chunks(video: VideoSample, stride: int = 1, size: int = CHUNK_FRAMES) -> Iterator[np.ndarray]:
    """Every ``stride``-th frame of ``video`` as ``(t, H, W, 3)`` uint8 chunks."""
    return _stacked(islice(video.iter_frames(), 0, None, stride), size)


def paired_chunks(generated: VideoSample, reference: VideoSample, stride: int = 1, region: FaceRegion | None = None,
                  config: Any = None, size: int = CHUNK_FRAMES) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frame pairs of both videos as ``((t, h, w, 3), (t, h, w, 3))`` uint8 chunks, up to the shorter length.

    Frames of different sizes are an error. With ``region`` both frames are cut at the reference's face.
    """
    track = region.track(reference, config) if region else None
    pairs = islice(zip(generated.iter_frames(), reference.iter_frames()), 0, None, stride)
    index = -stride
    batch_a: list[np.ndarray] = []
    batch_b: list[np.ndarray] = []
    for a, b in pairs:
        index += stride
        if a.shape != b.shape:
            raise DataError(f"{generated.path} frames are {a.shape[:2]}, reference {reference.path} frames are "
                            f"{b.shape[:2]}; they must have the same size")
        if track is not None:
            if index >= len(track) or not track.valid[index]:
                continue
            a, b = region.crop(a, track.landmarks[index]), region.crop(b, track.landmarks[index])
        batch_a.append(a)
        batch_b.append(b)
        if len(batch_a) == size:
            yield np.stack(batch_a), np.stack(batch_b)
            batch_a, batch_b = [], []
    if batch_a:
        yield np.stack(batch_a), np.stack(batch_b)
