"""Streaming video decoding and H.264 encoding with muxed audio."""
from __future__ import annotations

import contextlib
import functools
import math
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from ..errors import MediaError
from ..io_utils import atomic_path


@dataclass(frozen=True)
class VideoInfo:
    """Stream properties of a video file; width and height are as displayed (after rotation)."""

    path: Path
    fps: float
    frame_count: int
    width: int
    height: int
    has_audio: bool
    rotation: int = 0  # clockwise degrees applied to decoded frames for display
    duration: float = 0.0  # seconds of video


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise MediaError(f"{path}: not a readable media file ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path}: no video stream")
    return container


def _clockwise_rotation(frame: av.VideoFrame) -> int:
    """Display rotation of a decoded frame in clockwise degrees (0, 90, 180 or 270)."""
    return int(round(-float(frame.rotation or 0) / 90.0)) % 4 * 90


def _rotate(image: np.ndarray, clockwise: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(image, k=-clockwise // 90)) if clockwise else image


def probe_video(path: str | Path) -> VideoInfo:
    """Stream properties (decodes the first frame to read the display rotation)."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 25
        count = stream.frames
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        if not duration and container.duration:
            duration = container.duration / av.time_base
        if not count and duration:
            count = int(round(duration * float(rate)))
        rotation = 0
        try:
            rotation = _clockwise_rotation(next(container.decode(stream)))
        except (StopIteration, av.FFmpegError):
            pass
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(path, float(rate), int(count or 0), width, height, bool(container.streams.audio),
                         rotation, duration)


def _timed_frames(path: Path, container: av.container.InputContainer,
                  autorotate: bool) -> Iterator[tuple[float, float, np.ndarray]]:
    """Yield ``(pts seconds, duration seconds, (H, W, 3) uint8 RGB)`` in presentation order."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    produced = 0
    last_pts = None
    try:
        for frame in container.decode(stream):
            if frame.pts is None or frame.time_base is None:
                pts = 0.0 if last_pts is None else last_pts + 1 / rate
            else:
                pts = float(frame.pts * frame.time_base)
            duration = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 1 / rate
            image = frame.to_ndarray(format="rgb24")
            produced += 1
            last_pts = pts
            yield pts, duration, _rotate(image, _clockwise_rotation(frame)) if autorotate else image
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: corrupt video after {produced} frames ({exc})") from exc
    if produced == 0:
        raise MediaError(f"{path}: video stream holds no frames")


def _round_half_up(value: float) -> int:
    """ffmpeg's AV_ROUND_NEAR_INF for non-negative values (Python's round() rounds half to even)."""
    return int(math.floor(value + 0.5))


def resample_to_fps(timed: Iterator[tuple[float, float, np.ndarray]], fps: float) -> Iterator[np.ndarray]:
    """Constant-frame-rate resampling by dropping and duplicating frames, like ``ffmpeg -r fps``.

    Output frame ``n`` (time ``t0 + n / fps``) shows the latest input frame whose timestamp, rounded
    to the output grid, is at most ``n``; the last frame is held until the end of its duration.
    """
    previous = None
    next_index = 0
    start = end = 0.0
    for pts, duration, image in timed:
        if previous is None:
            start = pts
        index = _round_half_up((pts - start) * fps)
        if previous is not None:
            while next_index < index:
                yield previous
                next_index += 1
        previous = image
        end = pts + duration
    if previous is None:
        return
    last = max(_round_half_up((end - start) * fps), next_index + 1)
    while next_index < last:
        yield previous
        next_index += 1


def iter_frames(path: str | Path, fps: float | None = None, autorotate: bool = True) -> Iterator[np.ndarray]:
    """Yield the frames of ``path`` one at a time as ``(H, W, 3)`` uint8 RGB arrays.

    With ``fps`` the stream is resampled to that constant rate (variable frame rate included);
    ``autorotate`` applies the display rotation of phone videos, as players do.
    """
    path = Path(path)
    with _open(path) as container:
        timed = _timed_frames(path, container, autorotate)
        if fps is None:
            for _, _, image in timed:
                yield image
        else:
            yield from resample_to_fps(timed, fps)


def read_frames(path: str | Path, fps: float | None = None) -> np.ndarray:
    """All frames of ``path`` as ``(T, H, W, 3)`` uint8 RGB; for short clips only."""
    return np.stack(list(iter_frames(path, fps)))


@functools.lru_cache(maxsize=1)
def _cpu_has_avx512() -> bool:
    """Whether this CPU has AVX-512F, as numpy's own dispatcher detected it."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as features
    return bool(features.get("AVX512F"))


def x264_options(crf: int, preset: str) -> dict[str, str]:
    """libx264 options for a deterministic encode.

    x264's AVX-512 kernels make the output depend on memory they do not own: on an AVX-512 CPU the
    same 104x80 or 32x32 frames encoded ten times gave up to nine different videos, while with
    ``asm=avx2`` (or without AVX-512) every encode was identical (docs/testing.md). Where the CPU has
    AVX-512 the encoder is therefore kept on its AVX2 kernels; the speed cost is within noise.
    """
    options = {"crf": str(crf), "preset": preset}
    if _cpu_has_avx512():
        options["x264-params"] = "asm=avx2"
    return options


class VideoWriter:
    """Encode RGB frames to an H.264 mp4 with optional mono audio, written atomically.

    Use as a context manager; the file appears at ``path`` only when the block exits without error.
    Frames are ``(H, W, 3)`` uint8 RGB; odd sizes are padded by one pixel (yuv420p needs even sizes).
    """

    def __init__(self, path: str | Path, fps: float, audio: np.ndarray | None = None,
                 sample_rate: int = 16000, crf: int = 18, preset: str = "medium"):
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.audio = None if audio is None else np.asarray(audio, dtype=np.float32).reshape(-1)
        self.sample_rate = sample_rate
        self.options = x264_options(crf, preset)
        self._stack = contextlib.ExitStack()
        self._container = None
        self._stream = None
        self._audio_stream = None
        self._audio_done = 0
        self.frames_written = 0

    def __enter__(self) -> "VideoWriter":
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._container = self._stack.enter_context(av.open(str(tmp), mode="w", format="mp4"))
        return self

    def _open_stream(self, height: int, width: int) -> None:
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = self.options
        self._stream = stream
        if self.audio is not None and len(self.audio):
            self._audio_stream = self._container.add_stream("aac", rate=self.sample_rate, layout="mono")

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise MediaError(f"{self.path}: frames must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
        if self._stream is None:
            self._open_stream(*frame.shape[:2])
        if frame.shape[0] % 2 or frame.shape[1] % 2:
            frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1
        if self._audio_stream is not None:  # keep audio interleaved with the video it belongs to
            self._write_audio_until(int(self.frames_written / self.fps * self.sample_rate))

    def _write_audio_until(self, end: int) -> None:
        chunk = 1024  # AAC frame size
        end = min(end, len(self.audio))
        while self._audio_done + chunk <= end or (end == len(self.audio) and self._audio_done < end):
            start = self._audio_done
            samples = self.audio[start:start + chunk][None, :]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, self.sample_rate)
            for packet in self._audio_stream.encode(frame):
                self._container.mux(packet)
            self._audio_done = start + samples.shape[1]

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self._stream is None:
                    raise MediaError(f"{self.path}: no frames were written")
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                if self._audio_stream is not None:
                    self._write_audio_until(len(self.audio))
                    for packet in self._audio_stream.encode(None):
                        self._container.mux(packet)
        except BaseException:
            self._release(*sys.exc_info())
            raise
        self._release(exc_type, exc, tb)

    def _release(self, exc_type, exc, tb) -> None:
        """Close the container and drop the streams now: the AAC encoder's resampler is a filter graph with worker
        threads; left to the garbage collector (a writer caught in a reference cycle), a process forked meanwhile (a
        DataLoader worker, a multiprocessing Manager) could free it in the child and wait forever on a thread that
        does not exist there."""
        try:
            self._stack.__exit__(exc_type, exc, tb)
        finally:
            self._container = self._stream = self._audio_stream = None

