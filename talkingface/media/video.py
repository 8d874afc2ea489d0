"""Streaming video decoding and H.264 encoding with muxed audio."""
from __future__ import annotations

import contextlib
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
    """Stream properties of a video file."""

    path: Path
    fps: float
    frame_count: int
    width: int
    height: int
    has_audio: bool


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


def probe_video(path: str | Path) -> VideoInfo:
    """Read stream properties without decoding frames (frame count from the header when known)."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 25
        count = stream.frames
        if not count and stream.duration and stream.time_base:
            count = int(round(float(stream.duration * stream.time_base) * float(rate)))
        return VideoInfo(path, float(rate), int(count or 0), stream.codec_context.width,
                         stream.codec_context.height, bool(container.streams.audio))


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the frames of ``path`` one at a time as ``(H, W, 3)`` uint8 RGB arrays."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        produced = 0
        try:
            for frame in container.decode(stream):
                produced += 1
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: corrupt video after {produced} frames ({exc})") from exc
        if produced == 0:
            raise MediaError(f"{path}: video stream holds no frames")


def read_frames(path: str | Path) -> np.ndarray:
    """All frames of ``path`` as ``(T, H, W, 3)`` uint8 RGB; for short clips only."""
    return np.stack(list(iter_frames(path)))


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
        self.options = {"crf": str(crf), "preset": preset}
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
            self._stack.__exit__(*sys.exc_info())
            raise
        self._stack.__exit__(exc_type, exc, tb)
