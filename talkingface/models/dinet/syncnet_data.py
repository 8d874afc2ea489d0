"""Training pairs for DINet's SyncNet, whose training code was never released (our objective, documented).

Each item is one accepted 9-frame clip of a stored clip: the mouths of its frames 2..6 stacked on channels
(``mouths`` (15, M, M), as the clip stage feeds SyncNet), its own 9 audio frames (``audio`` (C, 9), in
sync) and the 9 audio frames of another accepted clip of the same stored clip (``audio_off`` (C, 9),
off sync: its start is at least 9 frames away, as accepted clips do not overlap). Wav2Lip-style: the
same face with a shifted window of the same speaker's audio, so the network must use timing, not identity.
"""
from __future__ import annotations

import numpy as np
import torch

from .data.clips import syncnet_window
from .data.crops import mouth_box
from .data.dataset import _DINetDataset
from .data.references import SOURCE_FRAMES


class SyncNetPairDataset(_DINetDataset):
    """In-sync and off-sync (audio from another 9-frame clip) pairs of one stored clip."""

    min_clips = 2

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip, crops = self._clip(index)
        rng = self.generator(index)
        count = len(clip.audio)
        source = int(rng.integers(count))
        other = int(rng.integers(count - 1))
        other += other >= source  # uniform over the other clips
        top, bottom, left, right = mouth_box(self.mouth)
        faces = self._images(crops[source, list(SOURCE_FRAMES)])  # (5, 3, H, W)
        mouths = faces[:, :, top:bottom, left:right].reshape(3 * len(SOURCE_FRAMES), bottom - top, right - left)
        return {"mouths": mouths.contiguous(),
                "audio": torch.from_numpy(np.ascontiguousarray(syncnet_window(clip.sync_audio[source]).T)),
                "audio_off": torch.from_numpy(np.ascontiguousarray(syncnet_window(clip.sync_audio[other]).T))}
