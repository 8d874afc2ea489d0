"""Per-video 3DMM fitting as AudioDVP does it: landmark loss + photometric loss + coefficient regularisers, identity
and albedo shared by all frames of a video, expression, pose and lighting per frame (docs/face3d.md, "Fitting").

AudioDVP regresses the per-frame coefficients with a ResNet-50 that it trains on the video and then discards; here
they are optimised directly (the same losses and weights), in two phases: the shared identity and albedo on a few
key frames spread over the video, then the frames in batches with the shared part fixed, each frame starting from
its nearest key frame. Each phase's result is written to a state folder, so an interrupted fit resumes.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from ..io_utils import atomic_path
from .face_model import ParametricFaceModel
from .rasterizer import render

logger = logging.getLogger(__name__)

# AudioDVP's LandmarkLoss weights (models/networks.py): 1 for the jaw (0-16) and the nose (27-35), 50 for the
# brows, eyes and mouth.
LANDMARK_WEIGHTS = np.array([1.0] * 17 + [50.0] * 10 + [1.0] * 9 + [50.0] * 32)
FRAME_BLOCKS = ("exp", "gamma", "angle", "trans")  # AudioDVP's per-frame order: delta, gamma, rotation, translation
SHARED_BLOCKS = ("id", "tex")  # alpha and beta, one for the whole video


@dataclass(frozen=True)
class FitSettings:
    """Loss weights (AudioDVP's ``options.py`` defaults) and the optimisation schedule.

    The data terms and the expression regulariser are sums over a batch in AudioDVP (batch 5); here they are
    scaled by ``reference_batch / batch``, so any batch weighs them as a batch of 5 does there. ``lr_shared`` and
    ``lr_frame`` are Adam step sizes for the shared and the per-frame coefficients (AudioDVP: 1e-3 for alpha and
    beta, 2e-5 for the network that outputs the rest; a directly optimised coefficient needs larger steps).
    ``image_size``: the square the frames and landmarks are in; by default the face model's (``int(2 center)``:
    Deep3DFaceRecon renders at 224, AudioDVP at 256), so a convention is never rendered at the other's size.
    """

    image_size: int | None = None  # None: the model's (ParametricFaceModel.image_size: 224 / 256)
    lambda_photo: float = 1.9
    lambda_land: float = 1.6e-3
    lambda_reg: float = 3e-4
    lambda_alpha: float = 1.0
    lambda_beta: float = 1.7e-3
    lambda_delta: float = 0.8
    reference_batch: int = 5
    lr_shared: float = 5e-2
    lr_frame: float = 5e-2
    lr_floor: float = 0.05
    beta1: float = 0.5
    beta2: float = 0.999
    key_frames: int = 12
    key_landmark_steps: int = 600
    key_steps: int = 100
    frame_landmark_steps: int = 400
    frame_steps: int = 30
    batch_size: int = 16

    def size_for(self, model: ParametricFaceModel) -> int:
        """The square the fit renders ``model`` at: ``image_size``, or the model's own (224 / 256)."""
        return self.image_size or model.image_size

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    """``coeffs`` (T, 257) float32 in the model's convention; ``landmark_error`` (T,) the final root mean square
    landmark distance per frame in pixels (NaN for frames without a face); ``key_indices`` the key frames and
    ``key_coeffs`` their coefficients from the key-frame phase (frames without a face take their nearest one's)."""

    coeffs: np.ndarray
    landmark_error: np.ndarray
    key_indices: np.ndarray
    key_coeffs: np.ndarray


def screen_vertices(model: ParametricFaceModel, vertices: torch.Tensor, size: int) -> torch.Tensor:
    """(B, N, 3) rasterizer coordinates (x right, y down, z the camera depth) of camera-space ``vertices``: AudioDVP's
    ``to_image`` is already (column, row); Deep3DFaceRecon's v grows upwards, so y = size - v."""
    uv = model.to_image(vertices)
    y = uv[..., 1] if model.convention.mirrored_camera else size - uv[..., 1]
    return torch.stack([uv[..., 0], y, vertices[..., 2]], dim=-1)


def pack_coeffs(model: ParametricFaceModel, shared: dict[str, torch.Tensor], frame: torch.Tensor) -> torch.Tensor:
    """(B, 257) coefficients in the model's order from the shared ``id``/``tex`` (1, K) and the per-frame
    (B, 97) block (exp, gamma, angle, trans)."""
    batch = frame.shape[0]
    parts, start = {}, 0
    for name in FRAME_BLOCKS:
        width = block_width(model, name)
        parts[name] = frame[:, start:start + width]
        start += width
    for name in SHARED_BLOCKS:
        parts[name] = shared[name].expand(batch, -1)
    ordered = sorted(model.coeff_slices, key=lambda name: model.coeff_slices[name].start)
    return torch.cat([parts[name] for name in ordered], dim=1)


def block_width(model: ParametricFaceModel, name: str) -> int:
    """How many coefficients the block ``name`` (id, exp, tex, angle, gamma, trans) has."""
    return model.coeff_slices[name].stop - model.coeff_slices[name].start


def frame_width(model: ParametricFaceModel) -> int:
    """The per-frame coefficients (exp, gamma, angle, trans): 97."""
    return sum(block_width(model, name) for name in FRAME_BLOCKS)


class KeypointModel:
    """The 68 landmarks of ``model`` without the rest of the mesh: the same shape, pose and camera applied to the
    keypoint rows of the bases only (what the landmark-only steps need, about 500 times less work than
    ``compute_for_render`` on a BFM-sized mesh)."""

    def __init__(self, model: ParametricFaceModel, device: torch.device):
        self.model = model
        rows = (3 * model.tensor("keypoints")[:, None] + torch.arange(3)).reshape(-1)
        self.mean = model.tensor("mean_shape")[:, rows].to(device)
        self.id_base = model.tensor("id_base")[rows].to(device)
        self.exp_base = model.tensor("exp_base")[rows].to(device)

    def landmarks(self, coeffs: torch.Tensor) -> torch.Tensor:
        """(B, 68, 2) as ``compute_for_render(coeffs)[3]`` (equal up to float32 rounding)."""
        model = self.model
        parts = model.split_coeff(coeffs)
        shape = (self.mean + parts["id"] @ self.id_base.T + parts["exp"] @ self.exp_base.T).reshape(-1, 68, 3)
        rotation = model.compute_rotation(parts["angle"])
        return model.to_image(model.to_camera(model.transform(shape, rotation, parts["trans"])))


class FitObjective:
    """AudioDVP's fitting loss for one batch of frames."""

    def __init__(self, model: ParametricFaceModel, settings: FitSettings, device: torch.device):
        self.model = model
        self.settings = settings
        self.keypoints = KeypointModel(model, device)
        self.faces = model.tensor("face_buf").to(device=device, dtype=torch.long)
        self.weights = torch.as_tensor(LANDMARK_WEIGHTS, dtype=torch.float32, device=device)

    def __call__(self, shared: dict[str, torch.Tensor], frame: torch.Tensor, images: torch.Tensor | None,
                 landmarks: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its terms. ``images`` (B, H, W, 3) in [0, 1] (None: landmark and regularisers only),
        ``landmarks`` (B, 68, 2) in the model's image coordinates, ``valid`` (B,) frames with a face."""
        s, model = self.settings, self.model
        scale = s.reference_batch / frame.shape[0]
        coeffs = pack_coeffs(model, shared, frame)
        if images is not None:
            vertices, _, colour, predicted = model.compute_for_render(coeffs)
        else:
            predicted = self.keypoints.landmarks(coeffs)
        mask = valid.to(predicted.dtype)
        squared = ((predicted - landmarks) ** 2).sum(-1)  # (B, 68)
        land = (self.weights * squared * mask[:, None]).sum() / 68.0 * scale
        exp = coeffs[:, model.coeff_slices["exp"]]
        reg = (s.lambda_alpha * (shared["id"] ** 2).sum() + s.lambda_beta * (shared["tex"] ** 2).sum()
               + s.lambda_delta * (exp ** 2 * mask[:, None]).sum() * scale)
        total = s.lambda_land * land + s.lambda_reg * reg
        terms = {"landmark": float(land.detach()), "regulariser": float(reg.detach())}
        if images is not None:
            size = s.size_for(model)
            rendered, covered = render(screen_vertices(model, vertices, size), self.faces, colour, size, size)
            rendered = rendered.clamp(0.0, 1.0)  # AudioDVP clamps the interpolated colour
            target = images * covered.unsqueeze(-1).to(images.dtype)  # MSE(render, gt * mask)
            per_frame = ((rendered - target) ** 2).mean(dim=(1, 2, 3))
            photo = (per_frame * mask).sum() / frame.shape[0]
            total = total + s.lambda_photo * photo
            terms["photometric"] = float(photo.detach())
        return total, terms

    def landmark_error(self, shared: dict[str, torch.Tensor], frame: torch.Tensor,
                       landmarks: torch.Tensor) -> torch.Tensor:
        """(B,) root mean square landmark distance in pixels."""
        with torch.no_grad():
            predicted = self.keypoints.landmarks(pack_coeffs(self.model, shared, frame))
            return ((predicted - landmarks) ** 2).sum(-1).mean(-1).sqrt()


def _optimise(objective: FitObjective, shared: dict[str, torch.Tensor], frame: torch.Tensor,
              images: torch.Tensor, landmarks: torch.Tensor, valid: torch.Tensor, landmark_steps: int, steps: int,
              fit_shared: bool) -> None:
    """Adam on ``frame`` (and ``shared`` when ``fit_shared``), in place: landmark-only steps, then all terms."""
    s = objective.settings
    frame.requires_grad_(True)
    groups = [{"params": [frame], "lr": s.lr_frame}]
    if fit_shared:
        for value in shared.values():
            value.requires_grad_(True)
        groups.append({"params": list(shared.values()), "lr": s.lr_shared})
    optimiser = torch.optim.Adam(groups, betas=(s.beta1, s.beta2))
    total = landmark_steps + steps
    # cosine decay to lr_floor of the starting step size: large steps reach the mouth's range, small ones settle
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda k: s.lr_floor + (1 - s.lr_floor) * 0.5 * (
        1 + math.cos(math.pi * k / max(1, total))))
    for step in range(total):
        optimiser.zero_grad(set_to_none=True)
        loss, _ = objective(shared, frame, images if step >= landmark_steps else None, landmarks, valid)
        loss.backward()
        optimiser.step()
        schedule.step()
    frame.requires_grad_(False)
    for value in shared.values():
        value.requires_grad_(False)


def nearest_of(candidates: np.ndarray, count: int) -> np.ndarray:
    """(count,) positions into the sorted, non-empty frame indices ``candidates``: the nearest one to each frame
    0..count-1, the earlier on a tie. O(T log K) memory-light (a long video must not build a T x K table)."""
    frames = np.arange(count)
    right = np.searchsorted(candidates, frames).clip(max=len(candidates) - 1)
    left = (right - 1).clip(min=0)
    return np.where(frames - candidates[left] <= np.abs(candidates[right] - frames), left, right)


def choose_key_frames(valid: np.ndarray, count: int) -> np.ndarray:
    """``count`` frames with a face, evenly spread over the video (all of them when there are fewer)."""
    candidates = np.flatnonzero(valid)
    if len(candidates) == 0:
        raise ValueError("no frame has a face: nothing to fit")
    if len(candidates) <= count:
        return candidates
    picks = np.round(np.linspace(0, len(candidates) - 1, count)).astype(int)
    return candidates[np.unique(picks)]


def _save(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def fit_video(model: ParametricFaceModel, frames: Callable[[], Iterable[np.ndarray]], landmarks: np.ndarray,
              valid: np.ndarray, settings: FitSettings = FitSettings(), state_dir: str | Path | None = None,
              device: str | torch.device = "cpu", progress: Callable[[int], None] | None = None) -> FitResult:
    """Fit the model to one video.

    ``frames()`` returns a fresh iterator over the video's crops in order (uint8 (S, S, 3), S =
    ``settings.size_for(model)``, by default the model's 224 / 256); it is called once for the key frames and once
    for the batches. ``landmarks`` (T, 68, 2) in the model's image coordinates of those crops (AudioDVP: column,
    row; Deep3DFaceRecon: x, y up), ``valid`` (T,) the frames with a face (the others keep their nearest key frame's
    coefficients and get no loss). With ``state_dir`` the key-frame fit and each finished batch are saved there
    (atomically) and reused by a later call with the same inputs. ``progress(n)`` is called with the frames finished.
    """
    device = torch.device(device)
    landmarks = np.asarray(landmarks, np.float32)
    valid = np.asarray(valid, bool)
    total = len(landmarks)
    if landmarks.shape != (total, 68, 2) or valid.shape != (total,):
        raise ValueError(f"landmarks must be (T, 68, 2) and valid (T,), got {landmarks.shape} and {valid.shape}")
    landmarks = np.where(valid[:, None, None], landmarks, 0.0)  # no NaN of a faceless frame reaches a loss
    state = Path(state_dir) if state_dir is not None else None
    if state is not None:
        state.mkdir(parents=True, exist_ok=True)
    objective = FitObjective(model, settings, device)
    lm = torch.from_numpy(landmarks).to(device)
    ok = torch.from_numpy(valid).to(device)
    width = frame_width(model)

    keys = choose_key_frames(valid, settings.key_frames)
    key_file = state / "key_frames.npz" if state is not None else None
    if key_file is not None and key_file.is_file():
        saved = np.load(key_file)
        shared = {name: torch.from_numpy(saved[name]).to(device) for name in SHARED_BLOCKS}
        key_params = torch.from_numpy(saved["frames"]).to(device)
        keys = saved["indices"]
    else:
        logger.info("fitting identity and albedo on %d key frames of %d", len(keys), total)
        images = _to_images(_select(frames(), set(keys.tolist())), keys, device)
        shared = {name: torch.zeros(1, block_width(model, name), device=device) for name in SHARED_BLOCKS}
        key_params = torch.zeros(len(keys), width, device=device)
        index = torch.from_numpy(keys).to(device)
        _optimise(objective, shared, key_params, images, lm[index], ok[index], settings.key_landmark_steps,
                  settings.key_steps, fit_shared=True)
        if key_file is not None:
            _save(key_file, indices=keys, frames=key_params.cpu().numpy(),
                  **{name: value.cpu().numpy() for name, value in shared.items()})
    nearest = nearest_of(keys, total)

    coeffs = np.zeros((total, model.num_coeffs), np.float32)
    error = np.full(total, np.nan, np.float32)
    batch = max(1, int(settings.batch_size))
    for start, crops in _batches(frames(), batch, total):
        stop = start + len(crops)
        part = state / f"frames_{start:07d}.npz" if state is not None else None
        if part is not None and part.is_file():
            params = torch.from_numpy(np.load(part)["frames"]).to(device)
        else:
            params = key_params[torch.from_numpy(nearest[start:stop]).to(device)].clone()
            window = slice(start, stop)
            if valid[window].any():
                images = _as_images(crops, device)
                _optimise(objective, shared, params, images, lm[window], ok[window],
                          settings.frame_landmark_steps, settings.frame_steps, fit_shared=False)
            if part is not None:
                _save(part, frames=params.cpu().numpy())
        coeffs[start:stop] = pack_coeffs(model, shared, params).detach().cpu().numpy()
        measured = objective.landmark_error(shared, params, lm[start:stop]).cpu().numpy()
        error[start:stop] = np.where(valid[start:stop], measured, np.nan)
        if progress is not None:
            progress(stop - start)
    key_coeffs = pack_coeffs(model, shared, key_params).detach().cpu().numpy()
    return FitResult(coeffs=coeffs, landmark_error=error, key_indices=np.asarray(keys), key_coeffs=key_coeffs)


def _select(frames: Iterable[np.ndarray], wanted: set[int]) -> Iterator[np.ndarray]:
    last = max(wanted)
    for index, frame in enumerate(frames):
        if index in wanted:
            yield frame
        if index >= last:
            return


def _as_images(crops: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """uint8 crops -> (B, S, S, 3) float32 in [0, 1] on ``device``."""
    return torch.from_numpy(np.stack(crops)).to(device, torch.float32) / 255.0


def _to_images(frames: Iterable[np.ndarray], keys: np.ndarray, device: torch.device) -> torch.Tensor:
    crops = list(frames)
    if len(crops) != len(keys):
        raise ValueError(f"the frames ended after {len(crops)} of {len(keys)} key frames")
    return _as_images(crops, device)


def _batches(frames: Iterable[np.ndarray], batch: int, total: int) -> Iterator[tuple[int, list[np.ndarray]]]:
    chunk: list[np.ndarray] = []
    start = count = 0
    for frame in frames:
        if count >= total:
            break
        chunk.append(frame)
        count += 1
        if len(chunk) == batch:
            yield start, chunk
            start, chunk = start + batch, []
    if chunk:
        yield start, chunk
    if count < total:
        raise ValueError(f"the frames ended after {count} of {total}")

