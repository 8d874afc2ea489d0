"""LSE of every face track of a video: the ``run_pipeline.py`` + ``calculate_scores_real_videos.py`` chain
in two streaming passes over the file, without its JPEG and XVID round trips.

Pass 1 detects faces on every 25 fps frame and finds shots; tracks are then built per shot. Pass 2
decodes the frames again, crops each track's face and feeds it to that track's ``SyncStream``; the
track's audio is the file's audio cut to the track's frames, as the reference cuts it with ffmpeg.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ...face import FaceBackend
from ...media import iter_frames, read_audio
from .face_tracks import FaceTrack, TrackingOptions, crop_face, crop_parameters, resize_to_face_size, track_shot
from .inputs import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, audio_to_int16_scale
from .scenes import ShotDetector
from .scorer import CHUNK_FRAMES, SyncNetScorer, SyncStream, batched

DETECT_BATCH = 8


class FaceDetector(Protocol):
    """Face boxes of RGB frames: one ``(K, 5)`` array ``[x1, y1, x2, y2, score]`` per frame."""

    def detect_batch(self, frames: list[np.ndarray]) -> list[np.ndarray]: ...


class BackendDetector:
    """A registered face backend's detector (the offline dlib default) used as the protocol's detector."""

    def __init__(self, backend: FaceBackend):
        self.backend = backend

    def detect_batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for frame in frames:
            boxes = [(*box.as_array(), 1.0) for box in self.backend.detect(frame)]
            out.append(np.array(boxes, dtype=np.float32).reshape(-1, 5))
        return out


class S3FDProtocolDetector:
    """S3FD as ``run_pipeline.py`` calls it: ``conf_th=0.9``, ``scales=[facedet_scale]`` (0.25)."""

    def __init__(self, detector, facedet_scale: float = 0.25, conf_threshold: float = 0.9):
        self.detector = detector
        self.scales = (facedet_scale,)
        self.conf_threshold = conf_threshold

    def detect_batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        return self.detector.detect_batch(np.stack(frames), conf_th=self.conf_threshold, scales=self.scales)


@dataclass
class TrackScore:
    """LSE of one face track; ``start``/``end`` are its first and last 25 fps frame (inclusive)."""

    start: int
    end: int
    lse_d: float
    lse_c: float
    offset: int

    @property
    def frames(self) -> int:
        return self.end - self.start + 1

    def as_dict(self) -> dict:
        return asdict(self)


def find_tracks(path: str | Path, detector: FaceDetector, options: TrackingOptions) -> list[FaceTrack]:
    """Pass 1: detections on every 25 fps frame, shots, and the tracks of the shots of ``min_track`` frames or more."""
    shots = ShotDetector()
    detections: list[np.ndarray] = []
    for batch in batched(iter_frames(path, fps=FPS), DETECT_BATCH):
        for frame in batch:
            shots.add(frame)
        detections += detector.detect_batch(batch)
    tracks: list[FaceTrack] = []
    for start, end in shots.shots():
        if end - start >= options.min_track:
            tracks += track_shot(detections[start:end], start, options)
    return tracks


def score_tracks(path: str | Path, tracks: list[FaceTrack], scorer: SyncNetScorer,
                 options: TrackingOptions) -> list[TrackScore]:
    """Pass 2: crop each track's face on every frame and score it against its cut of the audio."""
    if not tracks:
        return []
    audio = audio_to_int16_scale(read_audio(path, SAMPLE_RATE)).astype(np.int16)
    streams: list[SyncStream] = [
        scorer.stream(audio[track.start * SAMPLES_PER_FRAME:(track.end + 1) * SAMPLES_PER_FRAME]) for track in tracks]
    crops = [crop_parameters(track, options) for track in tracks]
    pending: list[list[np.ndarray]] = [[] for _ in tracks]
    last = max(track.end for track in tracks)
    for index, frame in enumerate(iter_frames(path, fps=FPS)):
        if index > last:
            break
        for k, track in enumerate(tracks):
            if track.start <= index <= track.end:
                size, centre_x, centre_y = crops[k][index - track.start]
                pending[k].append(resize_to_face_size(crop_face(frame, size, centre_x, centre_y, options)))
                if len(pending[k]) == CHUNK_FRAMES:
                    streams[k].add(np.stack(pending[k]))
                    pending[k] = []
    scores = []
    for track, stream, rest in zip(tracks, streams, pending):
        if rest:
            stream.add(np.stack(rest))
        result = stream.finish()
        scores.append(TrackScore(track.start, track.end, result["lse_d"], result["lse_c"], int(result["offset"])))
    return scores


def score_face_tracks(path: str | Path, scorer: SyncNetScorer, detector: FaceDetector,
                      options: TrackingOptions = TrackingOptions()) -> list[TrackScore]:
    """LSE-D / LSE-C / offset of every face track of the video at ``path`` (empty when no track qualifies)."""
    return score_tracks(path, find_tracks(path, detector, options), scorer, options)


TRACK_REDUCTIONS = ("mean", "longest", "best")


def reduce_tracks(tracks: list[TrackScore], rule: str) -> dict[str, float]:
    """One video's values from its tracks.

    ``mean``: mean LSE-D and LSE-C over tracks (LatentSync's per-video mean; Wav2Lip writes one line per
    track), offset of the longest track; ``longest``: the longest track's values; ``best``: smallest
    LSE-D and largest LSE-C over tracks, possibly from different tracks (syncnet-python 0.2.3).
    """
    if rule not in TRACK_REDUCTIONS:
        raise ValueError(f"unknown track reduction {rule!r}; choose one of {', '.join(TRACK_REDUCTIONS)}")
    longest = max(tracks, key=lambda t: t.frames)
    if rule == "longest":
        lse_d, lse_c = longest.lse_d, longest.lse_c
    elif rule == "best":
        lse_d, lse_c = min(t.lse_d for t in tracks), max(t.lse_c for t in tracks)
    else:
        lse_d, lse_c = float(np.mean([t.lse_d for t in tracks])), float(np.mean([t.lse_c for t in tracks]))
    return {"lse_d": lse_d, "lse_c": lse_c, "sync_offset": float(longest.offset), "lse_tracks": float(len(tracks))}
