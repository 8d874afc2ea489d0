"""The ``lse`` metric: LSE-D and LSE-C of each generated video with the released SyncNet, by one of two protocols.

``lrs`` (default): Wav2Lip's ``calculate_scores_LRS.py``, full frames resized to 224, one value per video.
``face``: joonson's ``run_pipeline.py`` face tracks and crops, then one value per track, reduced per video
by ``evaluate.lse_track_reduction``. Both stream the video (memory flat in its length).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...face import build_face_backend
from ...registry import register_metric
from ...weights import SYNCNET_V2
from ..metric import Metric, VideoSample
from .face_protocol import (TRACK_REDUCTIONS, BackendDetector, FaceDetector, S3FDProtocolDetector, reduce_tracks,
                            score_face_tracks)
from .face_tracks import TrackingOptions
from .scenes import scenedetect_available
from .scorer import SyncNetScorer, frame_chunks

logger = logging.getLogger(__name__)
PROTOCOLS = ("lrs", "face")
VALUE_KEYS = ("lse_d", "lse_c", "sync_offset")


@register_metric("lse", aliases=("lse_c", "lse_d", "syncnet"))
class LSEMetric(Metric):
    """LSE-D / LSE-C per video and their mean over videos; the protocol is ``evaluate.lse_protocol``."""

    needs_reference = False
    higher_is_better = {"lse_c": True, "lse_d": False}

    def __init__(self, config: Any = None):
        super().__init__(config)
        self.weights = Path(self.option("evaluate.syncnet_weights", SYNCNET_V2.default_path()))
        self.protocol = self.option("evaluate.lse_protocol", "lrs")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"evaluate.lse_protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        self.reduction = self.option("evaluate.lse_track_reduction", "mean")
        if self.reduction not in TRACK_REDUCTIONS:
            raise ConfigError(f"evaluate.lse_track_reduction must be one of {', '.join(TRACK_REDUCTIONS)}, "
                              f"got {self.reduction!r}")
        self.tracking = TrackingOptions(min_track=int(self.option("evaluate.lse_min_track", 100)),
                                        min_face_size=float(self.option("evaluate.lse_min_face_size", 100)))
        self._scorer: SyncNetScorer | None = None
        self._detector: FaceDetector | None = None

    def weight_files(self) -> dict[str, Path]:
        return {"syncnet": self.weights}

    def unavailable(self) -> str | None:
        reason = SYNCNET_V2.missing_reason(self.weights)
        if reason or self.protocol == "lrs":
            return reason
        return scenedetect_available()

    @property
    def scorer(self) -> SyncNetScorer:
        """The SyncNet, loaded on first use and kept for the following videos."""
        if self._scorer is None:  # never a number from the wrong network: the file must be the release
            self._scorer = SyncNetScorer(SYNCNET_V2.verify(self.weights), device=self.option("device", "auto"))
        return self._scorer

    @property
    def detector(self) -> FaceDetector:
        """S3FD when ``evaluate.lse_detector`` is ``s3fd``, or ``auto`` and its weights are present;
        otherwise the named face backend's detector (``auto``: dlib, offline)."""
        if self._detector is None:
            self._detector = self._build_detector()
        return self._detector

    def _build_detector(self) -> FaceDetector:
        from ...face.s3fd import SFD_FACE, S3FDDetector

        name = self.option("evaluate.lse_detector", "auto")
        weights = Path(self.option("evaluate.s3fd_weights", SFD_FACE.default_path()))
        if name == "s3fd" or (name == "auto" and SFD_FACE.missing_reason(weights) is None):
            reason = SFD_FACE.missing_reason(weights)
            if reason:
                raise ConfigError(f"evaluate.lse_detector is s3fd but {reason}")
            detector = S3FDDetector(SFD_FACE.verify(weights), device=self.option("device", "auto"))
            return S3FDProtocolDetector(detector, facedet_scale=float(self.option("evaluate.lse_facedet_scale", 0.25)))
        backend = "dlib" if name == "auto" else name
        logger.info("LSE face protocol: detecting faces with the %s backend (S3FD's %s is not used)", backend,
                    SFD_FACE.filename)
        return BackendDetector(build_face_backend(backend, self.config))

    def score(self, generated: VideoSample, reference: VideoSample | None) -> dict[str, float]:
        if self.protocol == "face":
            tracks = score_face_tracks(generated.path, self.scorer, self.detector, self.tracking)
            if not tracks:
                logger.warning("LSE face protocol: no face track of %d frames or more in %s; the video is left out "
                               "of the LSE means", self.tracking.min_track + 1, generated.path)
                return {"lse_d": float("nan"), "lse_c": float("nan"), "sync_offset": float("nan"), "lse_tracks": 0.0}
            return reduce_tracks(tracks, self.reduction)
        scores = self.scorer.score_chunks(frame_chunks(generated.path), generated.audio, generated.sample_rate)
        return {"lse_d": scores["lse_d"], "lse_c": scores["lse_c"], "sync_offset": float(scores["offset"])}

    def compute(self) -> dict[str, float]:
        """Means over the videos that have a value; with the face protocol also the number of videos without
        any qualifying face track (``lse_videos_without_track``)."""
        summary = {}
        for key in VALUE_KEYS:
            values = np.array(self.values.get(key, []), dtype=np.float64)
            values = values[np.isfinite(values)]
            summary[key] = float(values.mean()) if len(values) else float("nan")
        if self.protocol == "face":
            summary["lse_videos_without_track"] = float(sum(t == 0 for t in self.values.get("lse_tracks", [])))
        return summary
