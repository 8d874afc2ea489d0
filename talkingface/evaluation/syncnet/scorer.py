"""LSE-D / LSE-C of one clip with the released SyncNet, as Wav2Lip's ``calculate_scores_LRS.py`` scores it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ...media import read_audio, read_frames
from ...training.device import resolve_device
from ...models.checkpoint import add_missing_batchnorm_counters, load_state_dict_strict, read_checkpoint
from .distance import shifted_distances, sync_scores
from .inputs import (FPS, MFCC_PER_FRAME, SAMPLE_RATE, WINDOW_FRAMES, WINDOW_MFCC, audio_to_mfcc, check_frames,
                     frames_to_bgr224, window_count)
from .network import SyncNet


def syncnet_state_dict(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The SyncNet tensors of a released ``syncnet_v2.model`` (plain dict) or a ``{"state_dict": ...}`` wrapper.

    The 2017 release predates BatchNorm's ``num_batches_tracked``; those counters (unused in eval
    mode) are filled with 0 so that the strict load checks every real tensor.
    """
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    return add_missing_batchnorm_counters(checkpoint)


class SyncNetScorer:
    """SyncNet loaded once from ``weights``; scores clips of 25 fps frames and 16 kHz audio."""

    def __init__(self, weights: str | Path, device: str | torch.device | None = None, batch_size: int = 20):
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.batch_size = batch_size
        self.net = SyncNet()
        load_state_dict_strict(self.net, syncnet_state_dict(read_checkpoint(weights)), str(weights))
        self.net.to(self.device).eval()

    @torch.no_grad()
    def embed(self, frames: np.ndarray, cepstra: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Video and audio embeddings ``(count, 1024)`` float32 on the CPU of windows ``v = 0 .. count-1``.

        frames: ``(T, H, W, 3)`` uint8 RGB; cepstra: ``(13, T_mfcc)`` float32.
        """
        video, audio = [], []
        for start in range(0, count, self.batch_size):
            stop = min(start + self.batch_size, count)
            clip = frames_to_bgr224(frames[start:stop + WINDOW_FRAMES - 1], self.device)  # (t, 3, 224, 224)
            lips = clip.unfold(0, WINDOW_FRAMES, 1).permute(0, 1, 4, 2, 3)  # (B, 3, 5, 224, 224)
            sound = cepstra[:, start * MFCC_PER_FRAME:(stop - 1) * MFCC_PER_FRAME + WINDOW_MFCC].to(self.device)
            sound = sound.unfold(1, WINDOW_MFCC, MFCC_PER_FRAME).permute(1, 0, 2).unsqueeze(1)  # (B, 1, 13, 20)
            video.append(self.net.forward_lip(lips.contiguous()).cpu())
            audio.append(self.net.forward_aud(sound.contiguous()).cpu())
        return torch.cat(video), torch.cat(audio)

    def score_frames(self, frames: np.ndarray, audio: np.ndarray,
                     sample_rate: int = SAMPLE_RATE) -> dict[str, float | int]:
        """LSE of ``(T, H, W, 3)`` uint8 RGB frames at 25 fps and ``(N,)`` int16 or [-1, 1] float audio.

        Returns ``{"lse_d": float, "lse_c": float, "offset": int}``; the offset is in frames (the best
        audio window for video window ``n`` is ``n - offset``).
        """
        frames = check_frames(np.asarray(frames))
        cepstra = audio_to_mfcc(audio, sample_rate)
        count = window_count(len(frames), len(audio))
        video, sound = self.embed(frames, cepstra, count)
        return sync_scores(shifted_distances(video, sound))

    def score_video(self, path: str | Path) -> dict[str, float | int]:
        """LSE of a video file, its frames resampled to 25 fps and its audio to 16 kHz mono."""
        return self.score_frames(read_frames(path, fps=FPS), read_audio(path, SAMPLE_RATE))
