"""The registered ``fid`` metric: one FID over the full frames of all videos, pooled."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from ...registry import register_metric
from ..frames import frame_region, paired_chunks, video_chunks
from ..metric import Metric, VideoSample
from ...weights import FID_INCEPTION
from .features import InceptionFeatures
from .frechet import frechet_distance



@register_metric("fid")
class FIDMetric(Metric):
    """pytorch-fid FID between all generated and all reference frames of every video, pooled (every
    ``evaluate.fid_frame_stride``-th frame; full frames, or the face crops of ``evaluate.region: face``);
    no per-video value."""

    needs_reference = True
    higher_is_better = {"fid": False}

    def __init__(self, config: Any = None):
        super().__init__(config)
        self.weights = Path(self.option("evaluate.inception_weights", FID_INCEPTION.default_path()))
        stride = self.option("evaluate.fid_frame_stride", 1)
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
            raise ConfigError(f"evaluate.fid_frame_stride must be a positive integer, got {stride!r}")
        self.frame_stride = stride

    def weight_files(self) -> dict[str, Path]:
        return {"inception": self.weights}

    def unavailable(self) -> str | None:
        return FID_INCEPTION.missing_reason(self.weights)

    @functools.cached_property
    def features(self) -> InceptionFeatures:
        """The network, loaded on first use; never a number from a file that is not the release."""
        device = self.option("device", "auto")
        return InceptionFeatures(FID_INCEPTION.verify(self.weights), device=device)

    def reset(self) -> None:
        super().reset()
        self.generated_features: list[np.ndarray] = []
        self.reference_features: list[np.ndarray] = []

    def score(self, generated: VideoSample, reference: VideoSample | None) -> dict[str, float]:
        if reference is None:
            raise DataError(f"fid needs a reference video for {generated.path}")
        region = frame_region(self.config)
        if region is None:  # full frames: every frame of each video, whatever their lengths
            self.generated_features += [self.features(c) for c in video_chunks(generated, self.frame_stride)]
            self.reference_features += [self.features(c) for c in video_chunks(reference, self.frame_stride)]
            return {}
        for a, b in paired_chunks(generated, reference, self.frame_stride, region, self.config):
            self.generated_features.append(self.features(a))
            self.reference_features.append(self.features(b))
        return {}

    def compute(self) -> dict[str, float]:
        generated, reference = sum(map(len, self.generated_features)), sum(map(len, self.reference_features))
        if generated < 2 or reference < 2:
            raise DataError(f"fid needs at least 2 frames on each side, got {generated} generated "
                            f"and {reference} reference frames")
        return {"fid": frechet_distance(np.concatenate(self.generated_features),
                                        np.concatenate(self.reference_features))}
