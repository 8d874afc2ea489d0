"""LSE-D / LSE-C of one clip with the released SyncNet, as Wav2Lip's ``calculate_scores_LRS.py`` scores it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch

from ...errors import DataError
from ...media import iter_frames, read_audio
from ...checkpoint import add_missing_batchnorm_counters, load_state_dict_strict, read_checkpoint
from ...device import resolve_device
from .distance import RunningDistances, scores_from_means
from .inference import SyncNetInference
from .inputs import (FPS, MFCC_PER_FRAME, SAMPLE_RATE, SAMPLES_PER_FRAME, WINDOW_FRAMES, WINDOW_MFCC, audio_to_mfcc,
                     check_frames, frames_to_bgr224, window_count)
from .network import SyncNet

CHUNK_FRAMES = 64  # frames handed to a stream at a time by score_frames


def syncnet_state_dict(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The SyncNet tensors of a released ``syncnet_v2.model``: a plain state dict, a ``{"state_dict": ...}``
    wrapper, or a pickled module (only when its file loads with ``weights_only``).

    The 2017 release predates BatchNorm's ``num_batches_tracked``; those counters (unused in eval
    mode) are filled with 0 so that the strict load checks every real tensor.
    """
    if isinstance(checkpoint, torch.nn.Module):
        checkpoint = checkpoint.state_dict()
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    return add_missing_batchnorm_counters(checkpoint)


class SyncNetScorer:
    """SyncNet loaded once from ``weights``; scores clips of 25 fps frames and 16 kHz audio.

    ``net`` is the network in the release's layout; windows run through ``inference``, the same function
    as 2-D convolutions with folded BatchNorm (see ``inference.py``).
    """

    def __init__(self, weights: str | Path, device: str | torch.device | None = None, batch_size: int = 20):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.batch_size = batch_size
        self.net = SyncNet()
        load_state_dict_strict(self.net, syncnet_state_dict(read_checkpoint(weights)), str(weights))
        self.net.eval()
        self.inference = SyncNetInference(self.net).to(self.device)

    @torch.no_grad()
    def embed_windows(self, clip: torch.Tensor, cepstra: torch.Tensor, first: int) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
        """Embeddings of the consecutive windows ``first .. first + len(clip) - 5``.

        clip: ``(t, 3, 224, 224)`` BGR frames ``first .. first + t - 1`` on the scorer's device;
        cepstra: ``(13, T_mfcc)`` of the whole clip. Returns video and audio ``(t - 4, 1024)`` on the CPU.
        """
        count = len(clip) - WINDOW_FRAMES + 1
        lips = clip.unfold(0, WINDOW_FRAMES, 1).permute(0, 1, 4, 2, 3)  # (B, 3, 5, 224, 224)
        lips = lips.reshape(count, 3 * WINDOW_FRAMES, *clip.shape[-2:])  # channel c, frame t at c * 5 + t
        start = first * MFCC_PER_FRAME
        sound = cepstra[:, start:start + (count - 1) * MFCC_PER_FRAME + WINDOW_MFCC].to(self.device)
        sound = sound.unfold(1, WINDOW_MFCC, MFCC_PER_FRAME).permute(1, 0, 2).unsqueeze(1)  # (B, 1, 13, 20)
        if sound.shape[0] != count:
            raise DataError(f"the audio holds {sound.shape[0]} MFCC windows from window {first}, need {count}")
        return self.inference.forward_lip(lips).float().cpu(), self.inference.forward_aud(sound).float().cpu()

    def embed(self, frames: np.ndarray, cepstra: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Video and audio embeddings ``(count, 1024)`` of windows ``0 .. count - 1`` of ``(T, H, W, 3)`` RGB frames."""
        video, audio = [], []
        for start in range(0, count, self.batch_size):
            stop = min(start + self.batch_size, count)
            clip = frames_to_bgr224(frames[start:stop + WINDOW_FRAMES - 1], self.device)
            v, a = self.embed_windows(clip, cepstra, start)
            video.append(v)
            audio.append(a)
        return torch.cat(video), torch.cat(audio)

    def stream(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> "SyncStream":
        """A ``SyncStream`` for a clip with this ``(N,)`` audio; feed it the clip's frames in order."""
        return SyncStream(self, audio, sample_rate)

    def score_frames(self, frames: np.ndarray, audio: np.ndarray,
                     sample_rate: int = SAMPLE_RATE) -> dict[str, float | int]:
        """LSE of ``(T, H, W, 3)`` uint8 RGB frames at 25 fps and ``(N,)`` int16 or [-1, 1] float audio.

        Returns ``{"lse_d": float, "lse_c": float, "offset": int}``; the offset is in frames (the best
        audio window for video window ``n`` is ``n - offset``).
        """
        frames = check_frames(np.asarray(frames))
        window_count(len(frames), len(audio))  # refuse too-short clips before any work
        return self.score_chunks((frames[i:i + CHUNK_FRAMES] for i in range(0, len(frames), CHUNK_FRAMES)),
                                 audio, sample_rate)

    def score_chunks(self, chunks: Iterable[np.ndarray], audio: np.ndarray,
                     sample_rate: int = SAMPLE_RATE) -> dict[str, float | int]:
        """LSE of a clip whose ``(t, H, W, 3)`` RGB frames arrive in chunks (memory flat in clip length)."""
        stream = self.stream(audio, sample_rate)
        for chunk in chunks:
            stream.add(chunk)
        return stream.finish()

    def score_video(self, path: str | Path) -> dict[str, float | int]:
        """LSE of a video file, its frames resampled to 25 fps and its audio to 16 kHz mono, streamed."""
        return self.score_chunks(frame_chunks(path), read_audio(path, SAMPLE_RATE))


def frame_chunks(path: str | Path, size: int = CHUNK_FRAMES) -> Iterator[np.ndarray]:
    """The video's frames at 25 fps as ``(t, H, W, 3)`` uint8 RGB chunks of ``size`` frames, decoded lazily."""
    return (np.stack(chunk) for chunk in batched(iter_frames(path, fps=FPS), size))


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of ``size`` consecutive items (the last one shorter)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class SyncStream:
    """One clip scored as its frames arrive: windows run in batches, distances accumulate.

    Window ``v`` (frames ``v .. v + 4``) is scored once frame ``v + 5`` has arrived, because the
    reference scores ``min(frames, samples // 640) - 5`` windows; so the clip's length need not be
    known in advance, and at most ``batch_size + 5`` resized frames are held.
    """

    def __init__(self, scorer: SyncNetScorer, audio: np.ndarray, sample_rate: int = SAMPLE_RATE):
        self.scorer = scorer
        self.cepstra = audio_to_mfcc(audio, sample_rate)
        self.samples = len(audio)
        self.audio_frames = self.samples // SAMPLES_PER_FRAME
        self.frames_seen = 0
        self.next_window = 0
        self._buffer: torch.Tensor | None = None  # resized frames from index self.next_window
        self.distances = RunningDistances()

    def _last_window(self) -> int:
        """Index of the last window that can be scored with the frames seen so far (may be negative)."""
        return min(self.frames_seen, self.audio_frames) - WINDOW_FRAMES - 1

    def add(self, frames: np.ndarray) -> None:
        """Append ``(t, H, W, 3)`` uint8 RGB frames of the clip (25 fps)."""
        frames = check_frames(np.asarray(frames))
        if not len(frames):
            return
        resized = frames_to_bgr224(frames, self.scorer.device)
        self._buffer = resized if self._buffer is None else torch.cat([self._buffer, resized])
        self.frames_seen += len(frames)
        self._run(flush=False)

    def _run(self, flush: bool) -> None:
        batch = self.scorer.batch_size
        while True:
            ready = self._last_window() - self.next_window + 1
            if ready <= 0 or (ready < batch and not flush):
                break
            count = min(ready, batch)
            clip = self._buffer[:count + WINDOW_FRAMES - 1]
            video, audio = self.scorer.embed_windows(clip, self.cepstra, self.next_window)
            self.distances.add(video, audio)
            self.next_window += count
            self._buffer = self._buffer[count:]

    def finish(self) -> dict[str, float | int]:
        """``{"lse_d", "lse_c", "offset"}`` of everything added; DataError when the clip is too short."""
        window_count(self.frames_seen, self.samples)
        self._run(flush=True)
        return scores_from_means(self.distances.means())
