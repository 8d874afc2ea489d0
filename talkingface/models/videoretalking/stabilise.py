"""VideoReTalking's steps 0-3 (the release's ``inference.py``): every frame cut to one FFHQ box and resized to
256 x 256, 68 landmarks on those crops, Deep3DFaceRecon's 257 coefficients plus ``align_img``'s 5 crop parameters
per frame (the 262 "semantics"), and D-Net re-rendering each frame's 256 crop with its expression replaced by one
template: the "stabilised" reference video the lip-sync network reads.

``Stabiliser.analyse`` makes one streaming pass over the frames (only per-frame vectors are kept) and returns a
``StabiliserState``; ``Stabiliser.stabilised`` / ``stabilised_batch`` give the stabilised 256 crops frame by frame, and
``paste_stabilised`` puts one back into its frame. ``load_expression_template`` reads the template
(``expression.mat`` or an image's own expression); ``build_stabiliser`` puts them together from a model's options
(``checkpoint_dir``, ``bfm_folder``). docs/videoretalking.md.

What the release does, kept: the crop box from the first frame with a face (``ffhq_crop``: its quirks), the crops
resized with bilinear half-pixel sampling (``cv2.resize``'s INTER_LINEAR; OpenCV's fixed-point weights can differ by
one grey level), landmarks as float32 (the release's detector output) with y flipped in float32 (``H - 1 - y``),
``trans_params`` rounded to float32 and appended after the 257 coefficients, the D-Net image ``x / 255`` in float32
then ``(x - 0.5) / 0.5`` (torchvision's ``to_tensor`` and ``normalize``; ``trans_image``'s bicubic resize to 256 is the
identity on these crops), the output clamped to [-1, 1], ``(x + 1) / 2 * 255`` and **truncated** to uint8.

What differs, and why:

- The landmarks of the 256 crops are the frame landmarks mapped through the crop box (half-pixel centres, as the
  resize samples) instead of a second detection (face-alignment's FAN) on the crops.
- Frames without a face take the nearest frame with a face (the earlier on a tie); the release reuses the previous
  frame's landmarks, and before the first detection aligns with the mean face's 5 points (a crop of the image
  centre). The box comes from the first frame with a face anywhere in the video: the release looks only in the first
  half (``idx < len // 2``; never for a one-frame video) and crashes when it finds none there.
- The template is named (``neutral``, ``smile``) or an image file; the release takes any other string for
  ``neutral`` silently (``--exp_img happy``, ``face.jpeg``), and its image branch reads ``third_part/face3d/BFM``
  (absent from the release) instead of the configured BFM folder.
- Output in RGB (the release converts to BGR for OpenCV), in the D-Net's batches (the release: one frame at a time).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ...errors import CheckpointError, ConfigError, DataError
from ...face.crops import resize_bilinear
from ...face3d import VIDEORETALKING_FACE3D, ReconNet, align_img, image_to_tensor, landmarks_y_up, load_lm3d
from ...face3d.bfm_files import LANDMARKS_3D
from ...face3d.fitting import nearest_of
from ...face3d.recon import COEFF_SLICES
from .ffhq_crop import FfhqCrop, ffhq_crop
from .releases import DNET, EXPRESSION_MAT
from .semantics import driving_batch

FACE_SIZE = 256  # the crops D-Net, the landmarks and align_img work on
CROP_OUTPUT_SIZE = 512  # Croper.crop(..., xsize=512): decides only the shrink of very large faces
TEMPLATES = {"neutral": "expression_center", "smile": "expression_mouth"}  # --exp_img name -> expression.mat key
EXPRESSION_DIM = 64


# ---- the expression template ---------------------------------------------------------------------------------------
def load_expression_template(spec: str, checkpoint_dir: str | Path, recon: ReconNet | None = None,
                             lm3d: np.ndarray | None = None, *, landmarks: np.ndarray | None = None,
                             face_backend=None) -> torch.Tensor:
    """(64,) expression coefficients that replace every frame's: ``neutral`` / ``smile`` from
    ``<checkpoint_dir>/expression.mat`` (row 0 of ``expression_center`` / ``expression_mouth``, in the file's dtype),
    or an image file's own (``align_img`` + ``recon``, in its dtype; ``lm3d`` from the configured BFM folder).

    landmarks: the image's (68, 2) landmarks (x, y = row); when None, ``face_backend`` (default: the toolkit's
    ``dlib`` backend) detects them.
    """
    name = str(spec).strip().lower()
    if name in TEMPLATES:
        return _template_from_mat(Path(checkpoint_dir) / EXPRESSION_MAT.filename, TEMPLATES[name])
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"expression template {spec!r}: expected {' or '.join(map(repr, TEMPLATES))} or an "
                          f"image file")
    if recon is None or lm3d is None:
        raise ValueError(f"the expression of {path} needs the ReconNet and the BFM's align_img template (lm3d)")
    from PIL import Image

    with Image.open(path) as opened:
        image = np.asarray(opened.convert("RGB"))
    if landmarks is None:
        landmarks = _detect_landmarks(image, path, face_backend)
    coeffs = regress(recon, [align_img(image, _flipped(landmarks, image.shape[0]), lm3d)[1]])
    return coeffs[0, COEFF_SLICES["exp"]].clone()


def _template_from_mat(path: Path, key: str) -> torch.Tensor:
    if not path.is_file():
        raise CheckpointError(f"{path} not found: the expression templates (neutral, smile) are VideoReTalking's "
                              f"{EXPRESSION_MAT.filename} from {EXPRESSION_MAT.source}; put it in {path.parent} "
                              f"(see checkpoints/README.md), or give an image file as the template")
    from scipy.io import loadmat

    try:
        values = loadmat(str(path)).get(key)
    except Exception as exc:  # scipy raises several types for a file that is not a MAT file
        raise CheckpointError(f"{path}: not a readable MAT file ({exc})") from exc
    if values is None:
        raise CheckpointError(f"{path} has no '{key}' (the released {EXPRESSION_MAT.filename} holds "
                              f"{', '.join(TEMPLATES.values())})")
    values = np.asarray(values)
    row = values[0] if values.ndim == 2 else values.reshape(-1)  # the release takes row 0 of the (1, 64) array
    if not np.issubdtype(row.dtype, np.floating) or row.size < EXPRESSION_DIM:
        raise CheckpointError(f"{path}: '{key}' is {values.dtype} {values.shape}, expected (1, {EXPRESSION_DIM}) "
                              f"floats")
    return torch.tensor(row[:EXPRESSION_DIM])


def _detect_landmarks(image: np.ndarray, path: Path, face_backend) -> np.ndarray:
    if face_backend is None:
        from ...face import build_face_backend

        face_backend = build_face_backend("dlib")
    boxes = face_backend.detect(image)
    if not boxes:
        raise DataError(f"no face found in the expression image {path}")
    return face_backend.landmarks(image, boxes[0])


def _flipped(landmarks: np.ndarray, height: int) -> np.ndarray:
    """Landmarks as the release hands them to align_img: float32 (its detector's dtype), y = H - 1 - row."""
    points = np.asarray(landmarks, dtype=np.float32)
    if points.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks (68, 2), got {points.shape}")
    return landmarks_y_up(points, height)


def regress(recon: ReconNet, crops: Sequence[np.ndarray]) -> torch.Tensor:
    """(B, 257) coefficients of ``align_img``'s 224 crops (uint8 RGB), on the network's device and in its dtype."""
    parameter = next(recon.parameters())
    with torch.no_grad():
        return recon(image_to_tensor(np.stack(crops)).to(parameter.device, parameter.dtype))


# ---- missing files -------------------------------------------------------------------------------------------------
def missing_files(checkpoint_dir: str | Path, bfm_folder: str | Path, template: str | None = "neutral",
                  dnet: bool = True) -> list[str]:
    """Why the stabilisation cannot run: one line per missing file (ReconNet's weights, ``DNet.pt`` unless ``dnet``
    is False, the BFM's ``similarity_Lm3D_all.mat``, and ``expression.mat`` when ``template`` names one of its
    templates)."""
    checkpoint_dir, bfm_folder = Path(checkpoint_dir), Path(bfm_folder)
    wanted = [(checkpoint_dir / VIDEORETALKING_FACE3D.filename, f"{VIDEORETALKING_FACE3D.used_by}, from "
                                                                f"{VIDEORETALKING_FACE3D.source}")]
    if dnet:
        wanted.append((checkpoint_dir / DNET.filename, f"VideoReTalking's D-Net (expression neutralisation), from "
                                                       f"{DNET.source}"))
    wanted.append((bfm_folder / LANDMARKS_3D, "align_img's 3D landmark template, from the Basel Face Model folder "
                                              "(BFM.zip of the same release, or Deep3DFaceRecon's BFM/; "
                                              "`talkingface face3d standin` writes a synthetic stand-in: "
                                              "docs/face3d.md)"))
    if template is not None and str(template).strip().lower() in TEMPLATES:
        wanted.append((checkpoint_dir / EXPRESSION_MAT.filename,
                       f"the '{template}' expression template, from {EXPRESSION_MAT.source}"))
    return [f"{path.name} not found at {path} ({what}); see checkpoints/README.md"
            for path, what in wanted if not path.is_file()]


# ---- step 0 and 1: the 256 crops and their landmarks ---------------------------------------------------------------
def cut_ranges(crop: FfhqCrop, frame_size: tuple[int, int]) -> tuple[range, range]:
    """(rows, columns) of the frame that ``crop.cut`` keeps, as ranges of pixel indices."""
    width, height = frame_size
    clx, cly, crx, cry = crop.crop
    lx, ly, rx, ry = (int(v) for v in crop.quad)
    return range(height)[cly:cry][ly:ry], range(width)[clx:crx][lx:rx]


def face_crop(frame: np.ndarray, crop: FfhqCrop) -> np.ndarray:
    """(256, 256, 3) uint8: ``frame`` (H, W, 3) uint8 RGB cut to the box and resized bilinearly (step 0)."""
    return resize_bilinear(crop.cut(frame), (FACE_SIZE, FACE_SIZE))


def crop_landmarks(landmarks: np.ndarray, crop: FfhqCrop, frame_size: tuple[int, int]) -> np.ndarray:
    """(..., 2) frame points, e.g. (T, 68, 2) landmarks (x, y = row; pixel centres at integers) -> the 256 crop's,
    float32 (as the release's detector gives them): the resize maps pixel centre ``c`` of a cut of ``n`` pixels
    starting at ``s`` to ``(c - s + 0.5) * 256 / n - 0.5``."""
    rows, cols = cut_ranges(crop, frame_size)
    if not len(rows) or not len(cols):
        raise DataError(f"the FFHQ box {crop.crop} / {crop.quad} leaves nothing of a {frame_size[0]} x "
                        f"{frame_size[1]} frame")
    start = np.array([cols.start, rows.start], dtype=np.float64)
    scale = np.array([FACE_SIZE / len(cols), FACE_SIZE / len(rows)])
    return ((np.asarray(landmarks, dtype=np.float64) - start + 0.5) * scale - 0.5).astype(np.float32)


# ---- the state of one video ----------------------------------------------------------------------------------------
@dataclass
class StabiliserState:
    """What ``Stabiliser.analyse`` keeps of a video: per-frame vectors only.

    crop: the FFHQ box of frame ``first_face``; frame_size: (width, height); valid: (T,) frames with a face;
    landmarks: (T, 68, 2) float32 in the 256 crops (x, y = row), faceless frames filled from the nearest face;
    semantics: (T, 262) the 257 coefficients then ``trans_params`` (w0, h0, s, tx, ty) rounded to float32, in the
    ReconNet's dtype (float32 as the release).
    """

    crop: FfhqCrop
    frame_size: tuple[int, int]
    first_face: int
    valid: np.ndarray
    landmarks: np.ndarray
    semantics: np.ndarray

    @property
    def frames(self) -> int:
        return len(self.semantics)

    @property
    def region(self) -> tuple[int, int, int, int]:
        """(oy1, oy2, ox1, ox2): where the 256 crop goes back into the frame."""
        return self.crop.region


# ---- the stabiliser ------------------------------------------------------------------------------------------------
class Stabiliser:
    """Steps 0-3 of VideoReTalking with loaded networks.

    dnet: the D-Net (``DNet.pt``); recon: the ReconNet (``face3d_pretrain_epoch_20.pth``); lm3d: (5, 3)
    ``load_lm3d(bfm_folder)``; template: (64,) ``load_expression_template``; batch: frames per network call.
    The networks run in eval mode on ``device`` in their own dtype.
    """

    def __init__(self, dnet: nn.Module, recon: ReconNet, lm3d: np.ndarray, template: torch.Tensor,
                 device: str | torch.device = "cpu", batch: int = 8):
        self.device = torch.device(device)
        self.dnet = dnet.to(self.device).eval()
        self.recon = recon.to(self.device).eval()
        self.lm3d = np.asarray(lm3d)
        if self.lm3d.shape != (5, 3):
            raise ValueError(f"lm3d: expected align_img's 5 template points (5, 3) (load_lm3d), got {self.lm3d.shape}")
        self.template = torch.as_tensor(template).reshape(-1)
        if self.template.numel() < EXPRESSION_DIM:
            raise ValueError(f"template: expected {EXPRESSION_DIM} expression coefficients, got "
                             f"{self.template.numel()}")
        self.batch = max(1, int(batch))

    # ---- steps 0-2 -----------------------------------------------------------------------------------------------
    def analyse(self, frames: Iterable[np.ndarray], landmarks: np.ndarray, valid: np.ndarray,
                frame_size: tuple[int, int]) -> StabiliserState:
        """One pass over ``frames`` ((H, W, 3) uint8 RGB, in order) with their landmarks ((T, 68, 2) frame pixels,
        NaN where no face) and ``valid`` (T,): the crop box, the crop landmarks and the (T, 262) semantics.
        Holds at most ``batch`` 224 crops at a time, never the frames."""
        landmarks = np.asarray(landmarks, dtype=np.float64)
        if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
            raise ValueError(f"expected landmarks (T, 68, 2), got {landmarks.shape}")
        valid = np.asarray(valid, dtype=bool).reshape(-1)
        if len(valid) != len(landmarks):
            raise ValueError(f"{len(valid)} valid flags for {len(landmarks)} landmark frames")
        valid = valid & np.isfinite(landmarks).all(axis=(1, 2))
        faces = np.flatnonzero(valid)
        if not len(faces):
            raise DataError("no frame has a face: VideoReTalking's crop box needs one (pass such a video through)")
        width, height = (int(v) for v in frame_size)
        crop = ffhq_crop(landmarks[faces[0]], (width, height), CROP_OUTPUT_SIZE)
        filled = landmarks[faces[nearest_of(faces, len(landmarks))]]
        lm256 = crop_landmarks(filled, crop, (width, height))
        coeffs: list[torch.Tensor] = []
        params: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        count = 0
        for frame in frames:
            if count == len(landmarks):
                raise DataError(f"more frames than the {len(landmarks)} landmark frames")
            if frame.shape[:2] != (height, width):
                raise DataError(f"frame {count} is {frame.shape[1]} x {frame.shape[0]}, expected {width} x {height}")
            trans_params, crop224, _, _ = align_img(face_crop(frame, crop), _flipped(lm256[count], FACE_SIZE),
                                                    self.lm3d)
            params.append(trans_params)
            batch.append(crop224)
            count += 1
            if len(batch) == self.batch:
                coeffs.append(regress(self.recon, batch).cpu())
                batch.clear()
        if count != len(landmarks):
            raise DataError(f"{count} frames for {len(landmarks)} landmark frames")
        if batch:
            coeffs.append(regress(self.recon, batch).cpu())
        coefficients = torch.cat(coeffs).numpy()
        trans = np.stack(params).astype(np.float32)  # the release rounds trans_params to float32
        semantics = np.concatenate([coefficients, trans.astype(coefficients.dtype)], axis=1)
        return StabiliserState(crop, (width, height), int(faces[0]), valid, lm256, semantics)

    # ---- step 3 --------------------------------------------------------------------------------------------------
    def stabilised(self, state: StabiliserState, frame: np.ndarray, index: int) -> np.ndarray:
        """(256, 256, 3) uint8 RGB: frame ``index`` ((H, W, 3) uint8 RGB) with the template's expression."""
        return self.stabilised_batch(state, [frame], [index])[0]

    def stabilised_batch(self, state: StabiliserState, frames: Sequence[np.ndarray],
                         indices: Sequence[int]) -> np.ndarray:
        """(B, 256, 256, 3) uint8 RGB for frames ``indices`` (their (H, W, 3) uint8 RGB images, in the same order),
        D-Net run ``batch`` frames at a time."""
        if len(frames) != len(indices):
            raise ValueError(f"{len(frames)} frames for {len(indices)} indices")
        if len(indices) and not all(0 <= int(i) < state.frames for i in indices):
            raise IndexError(f"frame indices {list(indices)} outside 0..{state.frames - 1}")
        parameter = next(self.dnet.parameters())
        out = []
        for start in range(0, len(indices), self.batch):
            chunk = slice(start, start + self.batch)
            crops = np.stack([face_crop(frame, state.crop) for frame in frames[chunk]])
            driving = driving_batch(state.semantics, [int(i) for i in indices[chunk]], self.template)
            with torch.no_grad():
                fake = self.dnet(dnet_image(crops).to(parameter.device, parameter.dtype),
                                 driving.to(parameter.device, parameter.dtype))["fake_image"]
            out.append(to_uint8(fake))
        return np.concatenate(out) if out else np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8)


def dnet_image(crops: np.ndarray) -> torch.Tensor:
    """(B, 256, 256, 3) uint8 RGB -> (B, 3, 256, 256) float32 in [-1, 1]: ``x / 255`` in float32, then
    ``(x - 0.5) / 0.5`` (the release's ``trans_image``)."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)


def to_uint8(fake: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) D-Net output -> (B, H, W, 3) uint8: clamped to [-1, 1], ``(x + 1) / 2 * 255`` in the output's
    dtype and truncated, as the release converts it."""
    image = fake.detach().permute(0, 2, 3, 1).cpu().clamp(-1, 1).numpy()
    return ((image + 1) / 2.0 * 255).astype(np.uint8)


def paste_stabilised(frame: np.ndarray, face: np.ndarray, state: StabiliserState) -> np.ndarray:
    """A copy of ``frame`` (H, W, 3) uint8 with the 256 crop ``face`` resized (bilinear) into ``state.region``.

    This replaces the release's STIT round trip (``datagen``: face-alignment landmarks on the stabilised 256 crop,
    ``crop_faces`` to a 256 FFHQ quad, ``paste_image`` through the inverse perspective into the frame's region
    resized to 256, then resized to the region), which maps the crop back onto itself: an identity up to its two
    resamplings and the re-detected quad. What differs: here one resampling, and the whole region is replaced; the
    release keeps the frame's own pixels (resized to 256 and back) outside the re-detected quad, and there the crop has
    been through GPEN (step 5) first, which is not this function's job.
    """
    oy1, oy2, ox1, ox2 = state.region
    face = np.asarray(face)
    if face.shape != (FACE_SIZE, FACE_SIZE, 3) or face.dtype != np.uint8:
        raise ValueError(f"expected a (256, 256, 3) uint8 crop, got {face.dtype} {face.shape}")
    out = np.array(frame, copy=True)
    if oy2 > oy1 and ox2 > ox1:
        out[oy1:oy2, ox1:ox2] = resize_bilinear(face, (oy2 - oy1, ox2 - ox1))
    return out


def build_stabiliser(model, expression: str | None, device: str | torch.device = "cpu", batch: int = 8,
                     needed_by: str = "the stabilised reference (reference: stabilised)",
                     instead: str = "use reference: frame") -> Stabiliser:
    """A ``Stabiliser`` for a VideoReTalking model: its ``dnet``, the ReconNet from
    ``<checkpoint_dir>/face3d_pretrain_epoch_20.pth``, lm3d from ``bfm_folder`` and the ``expression`` template
    (``model.options``: ``checkpoint_dir``, ``bfm_folder``; an image template's face found with ``face_backend``,
    else ``preprocess.face_backend``; None: no template, for D-Net's training pairs). CheckpointError naming every
    missing file, what needs it (``needed_by``) and the alternative (``instead``)."""
    opts = model.options
    checkpoint_dir, bfm_folder = Path(opts["checkpoint_dir"]), Path(opts["bfm_folder"])
    missing = missing_files(checkpoint_dir, bfm_folder, expression, dnet=False)
    if missing:
        raise CheckpointError(f"{needed_by} needs " + "; ".join(missing) + f" (or {instead})")
    recon = ReconNet.from_checkpoint(checkpoint_dir / VIDEORETALKING_FACE3D.filename, device)
    lm3d = load_lm3d(bfm_folder)
    if expression is None:
        return Stabiliser(model.dnet, recon, lm3d, torch.zeros(EXPRESSION_DIM), device, batch)
    backend = None
    if str(expression).strip().lower() not in TEMPLATES and Path(expression).is_file():
        from ...face import build_face_backend

        config = getattr(model, "config", None) or {}
        name = opts.get("face_backend") or (config.get("preprocess") or {}).get("face_backend", "dlib")
        backend = build_face_backend(str(name), config)
    template = load_expression_template(expression, checkpoint_dir, recon, lm3d, face_backend=backend)
    return Stabiliser(model.dnet, recon, lm3d, template, device, batch)
