"""Registered per-video-frame audio features and the rule that fits them to the video's length."""
from __future__ import annotations

import abc
import logging
from typing import Any, ClassVar, Iterable

import numpy as np

from ..errors import AudioError
from ..registry import AUDIO_FEATURES, register_audio_feature
from .mel import CHUNK_COLUMNS, N_MELS, mel_chunks, melspectrogram
from .mfcc import mfcc
from .waveform import as_waveform
from .windows import clamped_windows

logger = logging.getLogger(__name__)

MFCC_ROWS_PER_SECOND = 100  # python_speech_features' default 10 ms step
MFCC_ROWS_PER_FRAME = 4
MFCC_COEFFICIENTS = 13
# AudioDVP (ATVGnet's vendor/ATVGnet/code/test.py): 0.12 s of zeros before and after the waveform, 7 video frames of
# 4 rows per window (0.28 s), coefficients c1..c12 (c0, the log energy, dropped)
AUDIODVP_PAD_SAMPLES = 1920
AUDIODVP_WINDOW_ROWS = 28
AUDIODVP_COEFFICIENTS = 12


def rows_at_fps(rows: np.ndarray, count: int, fps: float, rows_per_second: float, name: str,
                row_name: str = "feature") -> np.ndarray:
    """``count`` frames at ``fps`` from ``(T, ...)`` rows at ``rows_per_second``: each frame takes the row nearest
    to its time (``round(i * rate / fps)``, half up); frames after the last row repeat it (logged at INFO)."""
    index = np.floor(np.arange(count) * rows_per_second / fps + 0.5).astype(np.int64)
    late = int((index >= len(rows)).sum())
    if late:
        logger.info("%s: %d frames at %.3f fps fall after the last %g fps %s row; they repeat it",
                    name, late, fps, rows_per_second, row_name)
    return rows[np.minimum(index, len(rows) - 1)]


def reconcile_length(features: np.ndarray, num_frames: int, name: str, fps: float) -> np.ndarray:
    """Fit ``(K, ...)`` per-frame features to ``(num_frames, ...)`` at the tail, never resampling in time.

    Extra frames are trimmed; missing ones repeat the last frame's feature (zeros when ``K == 0``).
    Either change is logged at INFO with the offset in seconds.
    """
    have = len(features)
    if have > num_frames:
        logger.info("%s: the audio is %.3f s longer than the video; trimmed %d trailing frames of features",
                    name, (have - num_frames) / fps, have - num_frames)
        return features[:num_frames]
    if have < num_frames:
        logger.info("%s: the audio is %.3f s shorter than the video; padded %d trailing frames by repeating "
                    "the last feature", name, (num_frames - have) / fps, num_frames - have)
        last = features[-1:] if have else np.zeros((1, *features.shape[1:]), features.dtype)
        return np.concatenate([features, np.repeat(last, num_frames - have, axis=0)])
    return features


class AudioFeature(abc.ABC):
    """A registered audio feature with one ``frame_shape()`` array per video frame.

    Subclasses implement ``frame_shape`` and ``frame_features``; ``extract`` measures the audio in video
    frames, asks for that many and reconciles the count with the video's.
    """

    registered_name: ClassVar[str] = ""
    sample_rate: ClassVar[int] = 16000
    # the axis of one frame's feature that runs over time (None: none, or not known); averaged when a model
    # reduces the feature to one vector per frame (talkingface.audio.vectors)
    time_axis: ClassVar[int | None] = None

    def __init__(self, config: Any = None):
        self.config = config

    @abc.abstractmethod
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one video frame's feature, e.g. ``(80, 16)``."""

    @abc.abstractmethod
    def frame_features(self, wav: np.ndarray, count: int, fps: float) -> np.ndarray:
        """``(count, *frame_shape)`` float32 features of video frames ``0 .. count - 1``, all within the audio.

        ``wav``: ``(N,)`` float64 in [-1, 1] at ``sample_rate``; ``count >= 1``.
        """

    def extract(self, wav: np.ndarray, num_frames: int, fps: float = 25.0) -> np.ndarray:
        """``(num_frames, *frame_shape)`` float32 aligned to the video from ``(N,)`` audio at ``sample_rate``.

        ``wav``: float in [-1, 1] or int16. The audio covers ``round(N * fps / sample_rate)`` frames;
        ``reconcile_length`` trims or pads that to ``num_frames``.
        """
        if fps <= 0 or num_frames < 0:
            raise AudioError(f"need fps > 0 and num_frames >= 0, got fps={fps}, num_frames={num_frames}")
        wav = as_waveform(wav)
        count = round(len(wav) * fps / self.sample_rate)
        if count:
            features = self.frame_features(wav, count, fps)
        else:
            features = np.zeros((0, *self.frame_shape()), np.float32)
        return reconcile_length(features, num_frames, self.registered_name, fps)


@register_audio_feature("mel")
class MelChunks(AudioFeature):
    """Wav2Lip's ``(80, 16)`` log-mel window per frame: 0.2 s starting at the frame's time."""

    time_axis = 1

    def frame_shape(self) -> tuple[int, ...]:
        return (N_MELS, CHUNK_COLUMNS)

    def frame_features(self, wav: np.ndarray, count: int, fps: float) -> np.ndarray:
        return mel_chunks(melspectrogram(wav, self.sample_rate), count, fps)


@register_audio_feature("mfcc")
class MfccRows(AudioFeature):
    """The 4 python_speech_features MFCC rows (10 ms apart) starting at each frame's time: ``(4, 13)``."""

    time_axis = 0

    def frame_shape(self) -> tuple[int, ...]:
        return (MFCC_ROWS_PER_FRAME, MFCC_COEFFICIENTS)

    def frame_features(self, wav: np.ndarray, count: int, fps: float) -> np.ndarray:
        # SyncNet reads int16 WAV files and hands the raw sample values to python_speech_features
        rows = mfcc(np.clip(wav * 32768.0, -32768.0, 32767.0), self.sample_rate, numcep=MFCC_COEFFICIENTS)
        starts = np.floor(np.arange(count) * MFCC_ROWS_PER_SECOND / fps + 0.5)
        return clamped_windows(rows, starts, MFCC_ROWS_PER_FRAME, unit="MFCC rows").astype(np.float32)


@register_audio_feature("audiodvp_mfcc")
class AudioDvpMfcc(AudioFeature):
    """AudioDVP's AT-net input: 28 MFCC rows x c1..c12 per frame, ``(28, 12)``, as ATVGnet's ``test.py`` cuts them.

    The float waveform (not int16-scaled) with 1920 zeros on both ends, ``mfcc(..., winstep=0.01)``; frame ``i``
    takes padded rows ``s .. s + 27``, ``s = round(i * 100 / fps)`` (``4i`` at 25 fps, as the official loop); a
    window past the last row is moved back to end there (docs/audio_features.md, "audiodvp_mfcc")."""

    time_axis = 0

    def frame_shape(self) -> tuple[int, ...]:
        return (AUDIODVP_WINDOW_ROWS, AUDIODVP_COEFFICIENTS)

    def frame_features(self, wav: np.ndarray, count: int, fps: float) -> np.ndarray:
        pad = np.zeros(AUDIODVP_PAD_SAMPLES)
        rows = mfcc(np.concatenate([pad, wav, pad]), self.sample_rate, winstep=0.01)[:, 1:]
        starts = np.floor(np.arange(count) * MFCC_ROWS_PER_SECOND / fps + 0.5)
        return clamped_windows(rows, starts, AUDIODVP_WINDOW_ROWS, unit="MFCC rows").astype(np.float32)


def extract_features(names: Iterable[str], wav: np.ndarray, num_frames: int, fps: float = 25.0,
                     config: Any = None) -> dict[str, np.ndarray]:
    """``{name: (num_frames, *frame_shape) float32}`` for each registered feature in ``names``; each feature
    takes its options (e.g. ``deepspeech.weights``) from ``config``."""
    return {name: AUDIO_FEATURES.get(name)(config).extract(wav, num_frames, fps) for name in names}
