"""The ``face3d`` preprocessing step: per-frame 3DMM coefficients (257) and crop parameters (5) of every clip,
regressed by ``ReconNet`` when its weights are present or fitted to the video as AudioDVP does (docs/face3d.md,
"The face3d step"). Output in ``<clip>/face3d/``: ``coeffs.npy`` (T, 257) float32 in the convention's order,
``crop_params.npy`` (T, 5) float64, ``landmark_error.npy`` (T,) when fitted, and ``step.json``."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..config import Config
from ..device import resolve_device
from ..errors import CheckpointError, ConfigError, DataError
from ..io_utils import file_identity
from ..media import iter_frames
from ..registry import register_preprocess_step
from .steps import STEP_FILE, PreprocessStep
from .store import Clip

logger = logging.getLogger(__name__)

STEP_NAME = "face3d"
METHODS = ("auto", "recon", "fit")


def nearest_valid(landmarks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Landmarks with each frame without a face replaced by the nearest frame with one (for its crop only)."""
    from ..face3d.fitting import nearest_of

    good = np.flatnonzero(valid)
    return landmarks[good[nearest_of(good, len(valid))]]


@register_preprocess_step(STEP_NAME)
class Face3dStep(PreprocessStep):
    """Per-frame 3DMM coefficients; settings in the ``face3d`` config section."""

    def __init__(self, config: Config):
        super().__init__(config)
        from .. import face3d

        opts = self.opts = config["face3d"]
        self.convention = face3d.face_model.get_convention(opts["convention"])
        self.bfm_folder = Path(opts["bfm_folder"])
        method = str(opts["method"]).lower()
        if method not in METHODS:
            raise ConfigError(f"face3d.method={opts['method']!r}: expected one of {', '.join(METHODS)}")
        self.weights = self._recon_weights()
        if method == "auto":
            method = "recon" if self.weights is not None and self.convention is face3d.DEEP3DFACERECON else "fit"
        if method == "recon":
            if self.convention is not face3d.DEEP3DFACERECON:
                raise ConfigError("face3d.method=recon regresses Deep3DFaceRecon coefficients: set "
                                  "face3d.convention=deep3dfacerecon (or method=fit)")
            if self.weights is None:
                wanted = opts["recon_weights"] or " or ".join(
                    str(w.default_path()) for w in (face3d.VIDEORETALKING_FACE3D, face3d.DEEP3DFACERECON_EPOCH_20))
                raise CheckpointError(f"face3d.method=recon needs the regressor's weights: {wanted} not found "
                                      f"(see checkpoints/README.md)")
        self.method = method
        if opts.get("standin", False):
            self._write_standin()
        self._check_bfm_folder()
        self.device = resolve_device(config["device"])

    # ---- settings ------------------------------------------------------------------------------------------------
    def _recon_weights(self) -> Path | None:
        from .. import face3d

        if self.opts["recon_weights"]:
            path = Path(self.opts["recon_weights"])
            if not path.is_file():
                raise CheckpointError(f"face3d.recon_weights {path} not found")
            return path
        for known in (face3d.VIDEORETALKING_FACE3D, face3d.DEEP3DFACERECON_EPOCH_20):
            if known.default_path().is_file():
                return known.default_path()
        return None

    def _write_standin(self) -> None:
        """``face3d.standin: true`` (the demo jobs): write the synthetic stand-in into ``bfm_folder`` when it holds no
        face model yet (a folder with real files is never touched); said loudly, as every use of it is."""
        from .. import face3d

        folder = self.bfm_folder
        needed = [self.convention.model_file]
        if self.convention is face3d.DEEP3DFACERECON:
            needed.append(face3d.bfm_files.LANDMARKS_3D)
        if all((folder / name).is_file() for name in needed):
            return
        if any(folder.glob("*.mat")) and not face3d.is_standin(folder):
            raise DataError(f"face3d.standin: {folder} holds face model files that are not the stand-in's; "
                            f"refusing to write the stand-in there")
        logger.warning("face3d.standin: writing the SYNTHETIC STAND-IN face model (not the Basel Face Model) to %s",
                       folder)
        face3d.write_standin_bfm(folder, audiodvp=self.convention is face3d.AUDIODVP)

    def _check_bfm_folder(self) -> None:
        from .. import face3d

        folder = self.bfm_folder
        needed = [face3d.bfm_files.LANDMARKS_3D] if self.convention is face3d.DEEP3DFACERECON else []
        if self.method == "fit" and not (folder / self.convention.model_file).is_file():
            missing_raw = face3d.bfm_files.missing_raw_files(folder)
            if missing_raw:
                needed.append(self.convention.model_file)
        missing = [name for name in needed if not (folder / name).is_file()]
        if missing:
            raise DataError(f"face3d.bfm_folder {folder} lacks {', '.join(missing)}: put the Basel Face Model files "
                            f"there and run `talkingface face3d build-bfm {folder}` (docs/face3d.md), or write the "
                            f"synthetic stand-in with `talkingface face3d standin {folder}"
                            f"{' --audiodvp' if self.convention is face3d.AUDIODVP else ''}`")

    def fit_settings(self) -> Any:
        from ..face3d.fitting import FitSettings

        return FitSettings(batch_size=int(self.opts["batch_size"]), **dict(self.opts["fit"]))

    def fingerprint(self) -> dict[str, Any]:
        from .. import face3d

        folder = self.bfm_folder
        files = [self.convention.model_file] if self.method == "fit" else []
        if self.convention is face3d.DEEP3DFACERECON:
            files.append(face3d.bfm_files.LANDMARKS_3D)
        found = {name: file_identity(folder / name) for name in files if (folder / name).is_file()}
        settings: dict[str, Any] = {"method": self.method, "convention": self.convention.name, "bfm": found,
                                    "standin": face3d.is_standin(folder)}
        if self.method == "recon":
            settings["weights"] = file_identity(self.weights)
        else:
            settings["fit"] = self.fit_settings().to_dict()
        if self.convention is face3d.AUDIODVP:
            settings["portrait"] = [float(self.opts["crop_level"]), float(self.opts["vertical_adjust"])]
        return settings

    # ---- the work ------------------------------------------------------------------------------------------------
    def process(self, clip: Clip, out: Path, state: Path, progress: Callable[[int], None]) -> dict[str, Any]:
        from .. import face3d

        started = time.perf_counter()
        landmarks = clip.landmarks().astype(np.float64)
        valid = clip.face_valid(landmarks)
        if not valid.any():
            raise DataError(f"{clip.root}: no frame has a face; the face3d step needs landmarks")
        meta = clip.meta
        size = (int(meta["width"]), int(meta["height"]))
        coeffs, params, kind, error = self.video_coefficients(clip.video_path, landmarks, valid, size, state, progress)
        np.save(out / "coeffs.npy", coeffs.astype(np.float32))
        np.save(out / "crop_params.npy", params)
        seconds = time.perf_counter() - started
        summary: dict[str, Any] = {
            "method": self.method, "convention": self.convention.name, "crop": kind,
            "bfm_folder": str(self.bfm_folder), "standin": face3d.is_standin(self.bfm_folder),
            "weights": str(self.weights) if self.method == "recon" else None, "frames": int(len(coeffs)),
            "frames_without_face": int((~valid).sum()), "seconds": round(seconds, 3),
            "frames_per_second": round(len(coeffs) / max(seconds, 1e-9), 3)}
        if error is not None:
            np.save(out / "landmark_error.npy", error)
            summary["landmark_rms_px"] = {"mean": float(np.nanmean(error)), "max": float(np.nanmax(error))}
        logger.info("%s: face3d %s (%s%s) %d frames in %.1f s", clip.name, self.method, self.convention.name,
                    ", SYNTHETIC STAND-IN face model" if summary["standin"] else "", len(coeffs), seconds)
        return summary

    def video_coefficients(self, video: Path, landmarks: np.ndarray, valid: np.ndarray, size: tuple[int, int],
                           state: Path | None = None, progress: Callable[[int], None] = lambda n: None
                           ) -> tuple[np.ndarray, np.ndarray, str, np.ndarray | None]:
        """``(coeffs (T, 257), crop params (T, 5), crop kind, landmark error or None)`` of any video with tracked
        ``landmarks`` (T, 68, 2) in frame pixels, ``valid`` frames and frame ``size`` (width, height): what the step
        stores for a clip (a dub's target video goes through it too). ``state``: where a fit keeps its progress."""
        from .. import face3d

        filled = nearest_valid(np.asarray(landmarks, np.float64), valid)
        crops = self._crops(Path(video), filled, valid, size)
        if self.method == "recon":
            coeffs, error = self._regress(crops.frames, progress), None
        else:
            model = face3d.ParametricFaceModel(self.bfm_folder, convention=self.convention)
            result = face3d.fit_video(model, crops.frames, crops.landmarks, valid, self.fit_settings(),
                                      state_dir=state, device=self.device, progress=progress)
            coeffs, error = result.coeffs, result.landmark_error
        if len(coeffs) != len(landmarks):
            raise DataError(f"{video}: {len(coeffs)} frames decoded, {len(landmarks)} landmark frames")
        return coeffs, crops.params, crops.kind, error

    def _crops(self, video: Path, filled: np.ndarray, valid: np.ndarray, size: tuple[int, int]) -> "Crops":
        from .. import face3d
        from ..face3d import portrait

        if self.convention is face3d.AUDIODVP:
            box, row, lm = portrait.portrait_landmarks(filled, valid, size, float(self.opts["crop_level"]),
                                                       float(self.opts["vertical_adjust"]))
            params = np.tile(row, (len(filled), 1))

            def frames() -> Iterator[np.ndarray]:
                for frame in iter_frames(video):
                    yield portrait.crop_portrait(frame, box)

            return Crops("portrait", params, lm, frames)
        lm3d = face3d.load_lm3d(self.bfm_folder)
        up = [face3d.landmarks_y_up(points, size[1]) for points in filled]
        params = np.stack([face3d.align_params(points, lm3d, size) for points in up])
        lm = np.stack([face3d.landmarks_to_crop(points, p) for points, p in zip(up, params)])

        def aligned() -> Iterator[np.ndarray]:
            for index, frame in enumerate(iter_frames(video)):
                at = min(index, len(params) - 1)  # a longer video fails after the loop (frame count check)
                yield face3d.resize_n_crop(frame, up[at], params[at][3:5], float(params[at][2]))[0]

        return Crops("align_img", params, lm, aligned)

    def _regress(self, frames: Callable[[], Iterator[np.ndarray]], progress: Callable[[int], None]) -> np.ndarray:
        from .. import face3d

        net = face3d.ReconNet.from_checkpoint(self.weights, self.device)
        batch_size = max(1, int(self.opts["batch_size"]))
        out, batch = [], []

        def flush() -> None:
            with torch.no_grad():
                out.append(net(face3d.image_to_tensor(np.stack(batch)).to(self.device)).float().cpu().numpy())
            progress(len(batch))
            batch.clear()

        for crop in frames():
            batch.append(crop)
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
        return np.concatenate(out) if out else np.zeros((0, face3d.COEFF_DIM), np.float32)


@dataclass
class Crops:
    """How a clip's frames become the model's images: ``kind`` (align_img or portrait), ``params`` (T, 5),
    the landmarks in crop coordinates (T, 68, 2) and ``frames()`` a fresh iterator over the crops."""

    kind: str
    params: np.ndarray
    landmarks: np.ndarray
    frames: Callable[[], Iterator[np.ndarray]]


@dataclass
class Face3dCoefficients:
    """A clip's ``face3d`` output: ``coeffs`` (T, 257), ``crop_params`` (T, 5), ``info`` (its step.json summary:
    method, convention, crop kind, whether the face model is the stand-in)."""

    coeffs: np.ndarray
    crop_params: np.ndarray
    info: dict

    def with_crop_params(self) -> np.ndarray:
        """(T, 262) float32: the coefficients followed by the crop parameters (VideoReTalking's per-frame layout
        when the crop is align_img's trans_params)."""
        return np.concatenate([self.coeffs, self.crop_params.astype(np.float32)], axis=1)


def read_face3d(clip: Clip) -> Face3dCoefficients:
    """The clip's face3d coefficients; DataError when the step has not run on it."""
    import json

    folder = clip.root / STEP_NAME
    if not (folder / STEP_FILE).is_file():
        raise DataError(f"{folder} not found: preprocess with preprocess.steps=[face3d] (docs/face3d.md)")
    info = json.loads((folder / STEP_FILE).read_text(encoding="utf-8"))["summary"]
    return Face3dCoefficients(np.load(folder / "coeffs.npy"), np.load(folder / "crop_params.npy"), info)


def stored_face3d(video: Path, frames: int, fps: float, convention: str) -> Face3dCoefficients | None:
    """The step's output when ``video`` is a complete store clip's video processed in ``convention`` with ``frames``
    frames at ``fps`` (a dub of a training clip reuses it); None otherwise."""
    video = Path(video)
    clip = Clip(video.parent)
    if video.name != clip.video_path.name or not (clip.root / STEP_NAME / STEP_FILE).is_file() or not clip.is_complete:
        return None
    face3d = read_face3d(clip)
    clip_fps = float(clip.meta.get("fps", 0) or 0)
    if face3d.info.get("convention") != convention or len(face3d.coeffs) != frames or abs(clip_fps - fps) > 1e-6:
        return None
    return face3d
