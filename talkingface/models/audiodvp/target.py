"""The dubbed video's own 3DMM fit (docs/audiodvp.md, "Dubbing"): AudioDVP renders the new expressions with the
target's identity, albedo, pose and lighting, so every target frame needs its coefficients.

A video that is a clip of a preprocessed store with the ``face3d`` step in AudioDVP's convention reuses the step's
coefficients and portrait box; any other video is fitted here as the step fits a clip (the same portrait crop,
face model and ``face3d.fit`` settings), on the model's device. With ``fit_cache_dir`` the fit is kept on disk,
keyed on the video, its frame rate and the face model, and an interrupted fit resumes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import DataError
from ...face3d import ParametricFaceModel, crop_portrait, fit_video
from ...face3d.portrait import portrait_landmarks
from ...face3d.fitting import FitSettings
from ...io_utils import atomic_path, file_identity
from ...media import iter_frames
from ..common.datasets import cache_folder
from .data import portrait_box_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetFit:
    """``coeffs`` (n, 257) float32 per source frame, ``box`` the portrait box (left, top, size) in the frame."""

    coeffs: np.ndarray
    box: tuple[int, int, int]
    source: str  # "store" or "fit"


SMOOTHED_BLOCKS = ("gamma", "angle", "trans")


def smooth_pose(coeffs: np.ndarray, slices: dict[str, slice], window: int) -> np.ndarray:
    """``coeffs`` with lighting, rotation and translation averaged over ``window`` frames (centred, the ends
    repeated); identity, albedo and expression untouched. ``window`` <= 1 returns them as they are.

    A per-video fit explains part of the mouth's motion by the head's pitch and the lighting (measured on the demo
    clips with the stand-in: |r| up to 0.7 and 0.9 with the jaw coefficient); rendering the new expressions with
    those per-frame values would carry the original mouth's rhythm into the dub. Averaging over a few frames keeps
    the slow head motion and removes that speech-rate part."""
    window = int(window)
    if window <= 1:
        return coeffs
    out = coeffs.astype(np.float64).copy()
    half = window // 2
    padded = np.pad(out, ((half, window - 1 - half), (0, 0)), mode="edge")
    kernel = np.ones(window) / window
    for name in SMOOTHED_BLOCKS:
        block = slices[name]
        for column in range(block.start, block.stop):
            out[:, column] = np.convolve(padded[:, column], kernel, mode="valid")
    return out.astype(coeffs.dtype)


def stored_fit(video: Path, frames: int, fps: float) -> TargetFit | None:
    """The store's coefficients when ``video`` is a store clip fitted in AudioDVP's convention at this rate."""
    from ...data.face3d_step import stored_face3d

    face3d = stored_face3d(video, frames, fps, "audiodvp")
    if face3d is None:
        return None
    return TargetFit(face3d.coeffs.astype(np.float32), portrait_box_of(face3d.crop_params[0]), "store")


def fit_target(video: Path, fps: float, landmarks: np.ndarray, valid: np.ndarray, frame_size: tuple[int, int],
               face_model: ParametricFaceModel, config: Any, device: torch.device,
               cache_dir: str | Path | None = None) -> TargetFit:
    """The coefficients of every frame of ``video`` (tracked ``landmarks`` (n, 68, 2) in frame pixels, ``valid``,
    ``frame_size`` (width, height)):
    from its store clip when it is one, else fitted with ``config['face3d']``'s crop and fit settings."""
    video = Path(video)
    found = stored_fit(video, len(landmarks), fps)
    if found is not None:
        logger.info("%s: AudioDVP reuses the store's face3d coefficients", video)
        return found
    if not np.asarray(valid, bool).any():
        raise DataError(f"{video}: no frame has a face; AudioDVP needs the target's 3DMM fit")
    from ...data.face3d_step import nearest_valid

    opts = config["face3d"]
    filled = nearest_valid(np.asarray(landmarks, np.float64), valid)
    box, _, crop_landmarks = portrait_landmarks(filled, valid, frame_size, float(opts["crop_level"]),
                                                float(opts["vertical_adjust"]), face_model.image_size)
    settings = FitSettings(batch_size=int(opts["batch_size"]), **dict(opts["fit"]))
    state = None
    if cache_dir:
        key = {"video": file_identity(video), "fps": fps, "face_model": file_identity(face_model.model_path),
               "box": list(box), "settings": settings.to_dict()}
        folder = cache_folder(Path(cache_dir), video.stem, key)
        if (folder / "coeffs.npy").is_file():
            return TargetFit(np.load(folder / "coeffs.npy"), box, "fit")
        state = folder / "state"

    def frames():
        for frame in iter_frames(video, fps=fps):
            yield crop_portrait(frame, box, face_model.image_size)

    logger.info("%s: fitting AudioDVP's 3DMM to %d frames (portrait box %s)", video, len(landmarks), box)
    with torch.enable_grad():  # dubbing runs under no_grad; the fit optimises
        result = fit_video(face_model, frames, crop_landmarks, valid, settings, state_dir=state, device=device)
    if state is not None:
        with atomic_path(state.parent / "coeffs.npy") as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, result.coeffs)
    return TargetFit(result.coeffs.astype(np.float32), box, "fit")
