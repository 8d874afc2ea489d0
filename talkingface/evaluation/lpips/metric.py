"""The registered ``lpips`` metric: mean LPIPS over a video's paired frames, then mean over videos."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from ...registry import register_metric
from ..metric import Metric, VideoSample
from ..frames import frame_region, paired_chunks
from .network import BACKBONES
from .scorer import LPIPS
from .weights import BACKBONE_WEIGHTS, HEAD_WEIGHTS, resolve_head_path


@register_metric("lpips")
class LPIPSMetric(Metric):
    """LPIPS v0.1 (``evaluate.lpips_net``, default alex) in the ``evaluate.region`` (full frames by default),
    every ``evaluate.lpips_frame_stride``-th paired frame; per video the mean over frames."""

    needs_reference = True
    higher_is_better = {"lpips": False}

    def __init__(self, config: Any = None):
        super().__init__(config)
        net = self.option("evaluate.lpips_net", "alex")
        if net not in BACKBONES:
            raise ConfigError(f"evaluate.lpips_net must be one of {sorted(BACKBONES)}, got {net!r}")
        stride = self.option("evaluate.lpips_frame_stride", 1)
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
            raise ConfigError(f"evaluate.lpips_frame_stride must be a positive integer, got {stride!r}")
        self.net, self.frame_stride = net, stride
        self.backbone_weights = Path(self.option("evaluate.lpips_backbone_weights",
                                                 BACKBONE_WEIGHTS[net].default_path()))
        self.head_weights = resolve_head_path(net, self.option("evaluate.lpips_head_weights", None))

    def weight_files(self) -> dict[str, Path]:
        return {"backbone": self.backbone_weights, "head": self.head_weights}

    def unavailable(self) -> str | None:
        return (BACKBONE_WEIGHTS[self.net].missing_reason(self.backbone_weights)
                or HEAD_WEIGHTS[self.net].missing_reason(self.head_weights))

    @functools.cached_property
    def lpips(self) -> LPIPS:
        """The network, loaded (and SHA-256 checked) once, on first use."""
        return LPIPS(self.net, self.backbone_weights, self.head_weights, device=self.option("device", "auto"))

    def score(self, generated: VideoSample, reference: VideoSample | None) -> dict[str, float]:
        if reference is None:
            raise DataError(f"lpips needs a reference video for {generated.path}")
        distances = [self.lpips(a, b) for a, b in
                     paired_chunks(generated, reference, self.frame_stride, frame_region(self.config), self.config)]
        if not distances:
            raise DataError(f"lpips: no frame pair to compare in {generated.path} and {reference.path}")
        return {"lpips": float(np.mean(np.concatenate(distances)))}
