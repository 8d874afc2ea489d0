"""Turning one source video into processed clips: 25 fps frames, 16 kHz audio, landmarks, features.

One decode pass per source file feeds every segment (HDTF annotation ranges, shots) of that file.
Each clip is built in a temporary folder and renamed into place when complete, so the store never
holds a half-written clip; ``meta.json`` inside it is written last.
"""
from __future__ import annotations

import logging
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import Config
from ..errors import DataError, MediaError
from ..io_utils import atomic_write_json
from ..media import VideoWriter, iter_frames, probe_video, read_audio, write_wav
from ..registry import FACE_BACKENDS
from .store import ClipStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segment:
    """A time range of a source video that becomes the clip ``name`` (``end=None``: to the end)."""

    name: str
    start: float = 0.0
    end: float | None = None


class ClipBuilder:
    """Collects the frames of one segment: encodes them, tracks the face, then finalises the clip."""

    def __init__(self, segment: Segment, store: ClipStore, config: Config, backend: Any):
        from ..face import FaceTracker, OpenFaceBackend

        opts = config["preprocess"]
        self.segment = segment
        self.store = store
        self.config = config
        self.fps = float(opts["fps"])
        self.opts = opts
        store.root.joinpath("clips").mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{segment.name}.", dir=store.root / "clips"))
        self.writer = VideoWriter(self.tmp / "video.mp4", self.fps, crf=int(opts["crf"]), preset=opts["preset"])
        self.writer.__enter__()
        # OpenFace landmarks come from a CSV per source video, so there is nothing to track here.
        self.tracker = None if isinstance(backend, OpenFaceBackend) else FaceTracker(
            backend, detect_every=int(opts["detect_every"]), max_gap=int(opts["max_gap"]),
            smoothing_window=int(opts["smoothing_window"]))
        self.frames = 0
        self.size: tuple[int, int] | None = None

    def add(self, frame: np.ndarray) -> None:
        self.writer.write(frame)
        if self.tracker is not None:
            self.tracker.update(frame)
        self.size = (frame.shape[1], frame.shape[0])
        self.frames += 1

    def abort(self) -> None:
        try:
            self.writer.__exit__(RuntimeError, RuntimeError("aborted"), None)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def finish(self, audio: np.ndarray, source: Path, source_meta: dict, track: Any = None) -> Path:
        """Write audio, landmarks, features and meta.json, then move the clip into place.

        ``track`` supplies the landmarks when they were not tracked here (OpenFace CSVs)."""
        from ..audio import extract_features

        try:
            if self.frames == 0:
                raise DataError(f"{source}: segment {self.segment.name} "
                                f"({self.segment.start:.2f}-{self.segment.end}) holds no frames")
            self.writer.__exit__(None, None, None)
            track = self.tracker.finish() if self.tracker is not None else track
            for event in track.events:
                logger.info("%s: %s", self.segment.name, event)
            valid_fraction = float(track.valid.mean())
            if valid_fraction < float(self.opts["min_valid_fraction"]):
                raise DataError(f"{source}: a face was found in only {valid_fraction:.0%} of the frames of "
                                f"{self.segment.name} (preprocess.min_valid_fraction="
                                f"{self.opts['min_valid_fraction']})")
            samples = int(round(self.frames / self.fps * int(self.opts["sample_rate"])))
            clip_audio, offset = fit_audio_length(audio, samples)
            if offset:
                logger.info("%s: audio %s by %.3f s to match %d frames", self.segment.name,
                            "trimmed" if offset > 0 else "padded with silence", abs(offset) /
                            int(self.opts["sample_rate"]), self.frames)
            write_wav(self.tmp / "audio.wav", clip_audio, int(self.opts["sample_rate"]))
            np.save(self.tmp / "landmarks.npy", track.landmarks.astype(np.float32))
            np.save(self.tmp / "face_valid.npy", track.valid)
            features = extract_features(list(self.opts["features"]), clip_audio, self.frames, self.fps, self.config)
            (self.tmp / "features").mkdir(exist_ok=True)
            for name, values in features.items():
                np.save(self.tmp / "features" / f"{name}.npy", values)
            meta = {
                **source_meta,
                "segment": {"start": self.segment.start, "end": self.segment.end},
                "fps": self.fps, "frames": self.frames, "width": self.size[0], "height": self.size[1],
                "sample_rate": int(self.opts["sample_rate"]),
                "audio_offset_seconds": offset / int(self.opts["sample_rate"]),
                "face_backend": self.opts["face_backend"], "face_valid_fraction": valid_fraction,
                "face_events": track.events, "features": sorted(features),
            }
            atomic_write_json(self.tmp / "meta.json", meta)
            target = self.store.clip(self.segment.name).root
            if target.exists():
                shutil.rmtree(target)
            self.tmp.rename(target)
            return target
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise


def fit_audio_length(audio: np.ndarray, samples: int) -> tuple[np.ndarray, int]:
    """Trim or zero-pad the tail of ``audio`` to ``samples``; returns it and the samples removed
    (negative when padded). Never stretched: lip sync depends on the timing."""
    offset = len(audio) - samples
    if offset >= 0:
        return audio[:samples], offset
    return np.concatenate([audio, np.zeros(-offset, dtype=audio.dtype)]), offset


def make_face_backend(config: Config) -> Any:
    """The configured face backend, built once per worker process."""
    import talkingface.face  # noqa: F401  (registers the built-in backends)

    return FACE_BACKENDS.get(config["preprocess"]["face_backend"])(config)


def process_source(source: str | Path, segments: Sequence[Segment], store: ClipStore, config: Config,
                   backend: Any | None = None) -> list[Path]:
    """Decode ``source`` once at the configured fps and build one clip per segment.

    Segments must not overlap. Clips already complete in the store are skipped. Raises MediaError or
    DataError naming the file when it cannot be decoded, has no audio, or a segment has no face.
    """
    source = Path(source)
    todo = sorted((s for s in segments if not store.clip(s.name).is_complete), key=lambda s: s.start)
    if not todo:
        return []
    info = probe_video(source)
    if not info.has_audio:
        raise MediaError(f"{source}: no audio stream (talking-face clips need the speech)")
    opts = config["preprocess"]
    fps = float(opts["fps"])
    audio = read_audio(source, int(opts["sample_rate"]))
    backend = backend or make_face_backend(config)
    csv_track = _openface_track(backend, source)
    source_meta = {"source": str(source), "source_fps": info.fps, "source_size": [info.width, info.height],
                   "rotation": info.rotation, "versions": _versions()}
    done: list[Path] = []
    builders: dict[int, ClipBuilder] = {}
    bounds = [(math.ceil(s.start * fps - 1e-6), math.inf if s.end is None else math.ceil(s.end * fps - 1e-6))
              for s in todo]
    try:
        for index, frame in enumerate(iter_frames(source, fps=fps)):
            if index >= max(end for _, end in bounds):
                break
            for k, (first, end) in enumerate(bounds):
                if first <= index < end:
                    if k not in builders:
                        builders[k] = ClipBuilder(todo[k], store, config, backend)
                    builders[k].add(frame)
                elif index >= end and k in builders:
                    done.append(_finish(builders.pop(k), audio, first, fps, opts, source, source_meta, csv_track))
        for k in sorted(builders):
            done.append(_finish(builders.pop(k), audio, bounds[k][0], fps, opts, source, source_meta, csv_track))
    finally:
        for builder in builders.values():
            builder.abort()
    missing = [todo[k].name for k in range(len(todo)) if not store.clip(todo[k].name).is_complete]
    if missing:
        raise DataError(f"{source}: segments {', '.join(missing)} start after the end of the video "
                        f"({info.duration:.2f} s)")
    return done


def _finish(builder: ClipBuilder, audio: np.ndarray, first_frame: int, fps: float, opts: Any,
            source: Path, source_meta: dict, csv_track: Any) -> Path:
    start = int(round(first_frame / fps * int(opts["sample_rate"])))
    track = None if csv_track is None else csv_segment(csv_track, first_frame, builder.frames, opts, source)
    return builder.finish(audio[start:], source, source_meta, track)


def csv_segment(track: Any, first: int, count: int, opts: Any, source: Path) -> Any:
    """Frames ``[first, first + count)`` of an OpenFace track, gap-filled and smoothed like tracked ones."""
    from ..face import FaceTrack, fill_gaps, smooth_track

    if first + count > len(track):
        raise DataError(f"{source}: the OpenFace CSV has {len(track)} frames but the video has at least "
                        f"{first + count} at {opts['fps']} fps; run OpenFace on the 25 fps video")
    part = FaceTrack.from_landmarks(track.landmarks[first:first + count], track.valid[first:first + count])
    if not part.valid.any():
        raise DataError(f"{source}: OpenFace found no face in frames {first}-{first + count - 1}")
    return smooth_track(fill_gaps(part, int(opts["max_gap"])), int(opts["smoothing_window"]))


def _openface_track(backend: Any, source: Path) -> Any:
    """The whole source's OpenFace track when that backend is selected, else ``None``."""
    from ..face import OpenFaceBackend, read_openface_csv

    if not isinstance(backend, OpenFaceBackend):
        return None
    return read_openface_csv(backend.csv_for(source), min_confidence=float(backend.options["min_confidence"]))


def _versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for package in ("talkingface", "av", "dlib-bin", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
