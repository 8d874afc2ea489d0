"""The ``lse`` metric: LSE-D and LSE-C of each generated video with the released SyncNet."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...media import probe_video, read_frames
from ...registry import register_metric
from ...weights import SYNCNET_V2
from ..metric import Metric, VideoSample
from .inputs import FPS
from .scorer import SyncNetScorer


def frames_at_25fps(video: VideoSample) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB frames of ``video`` at 25 fps (the cached frames when already at 25 fps)."""
    if abs(probe_video(video.path).fps - FPS) < 1e-3:
        return video.frames
    return read_frames(video.path, fps=FPS)


@register_metric("lse", aliases=("lse_c", "lse_d", "syncnet"))
class LSEMetric(Metric):
    """Wav2Lip's LRS protocol: full frames resized to 224, one (LSE-D, LSE-C) per video, mean over videos."""

    needs_reference = False
    higher_is_better = {"lse_c": True, "lse_d": False}

    def __init__(self, config: Any = None):
        super().__init__(config)
        self.weights = Path(self.option("evaluate.syncnet_weights", SYNCNET_V2.default_path()))
        self._scorer: SyncNetScorer | None = None

    def unavailable(self) -> str | None:
        return SYNCNET_V2.missing_reason(self.weights)

    @property
    def scorer(self) -> SyncNetScorer:
        """The SyncNet, loaded on first use and kept for the following videos."""
        if self._scorer is None:  # never a number from the wrong network: the file must be the release
            self._scorer = SyncNetScorer(SYNCNET_V2.verify(self.weights), device=self.option("device", "auto"))
        return self._scorer

    def score(self, generated: VideoSample, reference: VideoSample | None) -> dict[str, float]:
        scores = self.scorer.score_frames(frames_at_25fps(generated), generated.audio, generated.sample_rate)
        return {"lse_d": scores["lse_d"], "lse_c": scores["lse_c"], "sync_offset": float(scores["offset"])}
