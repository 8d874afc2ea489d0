"""The dubbed video's own 3DMM coefficients (docs/gsmoothface.md, "Dubbing"): GSmoothFace replaces each target frame's
expression with A2EP's and keeps its identity, albedo, pose and lighting (``app/main_render_pred_results.py``), so every
target frame needs its Deep3DFaceRecon coefficients and ``align_img`` parameters.

A video that is a clip of a preprocessed store with the face3d step in that convention reuses the step's output; any
other video goes through the face3d step's own code (``Face3dStep.video_coefficients``: ReconNet when its weights are
there, else the fit) with the run's ``face3d`` settings. With ``fit_cache_dir`` the result is kept on disk, keyed on the
video, its frame rate and the step's settings, and an interrupted fit resumes.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import DataError
from ...io_utils import atomic_path, file_identity
from ..common.datasets import cache_folder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetCoefficients:
    """Per source frame: ``coeffs`` (n, 257) float32 and ``params`` (n, 5) align_img parameters; ``source``: store
    or fit."""

    coeffs: np.ndarray
    params: np.ndarray
    source: str


def stored_coefficients(video: Path, frames: int, fps: float) -> TargetCoefficients | None:
    """The store's face3d output when ``video`` is a store clip processed in Deep3DFaceRecon's convention at this
    rate."""
    from ...data.face3d_step import stored_face3d

    face3d = stored_face3d(video, frames, fps, "deep3dfacerecon")
    if face3d is None:
        return None
    return TargetCoefficients(face3d.coeffs.astype(np.float32), face3d.crop_params, "store")


def target_coefficients(video: Path, fps: float, landmarks: np.ndarray, valid: np.ndarray,
                        frame_size: tuple[int, int], config: Any, cache_dir: str | Path | None = None
                        ) -> TargetCoefficients:
    """The coefficients of every frame of ``video`` (tracked ``landmarks`` (n, 68, 2), ``valid``, ``frame_size``
    (width, height)): from its store clip when it is one, else from the face3d step's code."""
    from ...data.face3d_step import Face3dStep

    video = Path(video)
    found = stored_coefficients(video, len(landmarks), fps)
    if found is not None:
        logger.info("%s: GSmoothFace reuses the store's face3d coefficients", video)
        return found
    if not np.asarray(valid, bool).any():
        raise DataError(f"{video}: no frame has a face; GSmoothFace needs the target's 3DMM coefficients")
    step = Face3dStep(config.updated({"face3d": {"convention": "deep3dfacerecon"}}, "gsmoothface target"))
    state = folder = None
    if cache_dir:
        key = {"video": file_identity(video), "fps": fps, "settings": step.fingerprint(),
               "landmarks": hashlib.sha256(np.nan_to_num(landmarks).tobytes()).hexdigest()}
        folder = cache_folder(Path(cache_dir), video.stem, key)
        if (folder / "coeffs.npy").is_file() and (folder / "params.npy").is_file():
            return TargetCoefficients(np.load(folder / "coeffs.npy"), np.load(folder / "params.npy"), "fit")
        state = folder / "state"
        state.mkdir(parents=True, exist_ok=True)
    logger.info("%s: Deep3DFaceRecon coefficients of %d frames (face3d %s)", video, len(landmarks), step.method)
    with torch.enable_grad():  # dubbing runs under no_grad; a fit optimises
        coeffs, params, _, _ = step.video_coefficients(video, landmarks, valid, frame_size, state)
    coeffs = coeffs.astype(np.float32)
    if folder is not None:
        for name, values in (("params", params), ("coeffs", coeffs)):  # coeffs last: its presence means done
            with atomic_path(folder / f"{name}.npy") as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, values)
    return TargetCoefficients(coeffs, params, "fit")
