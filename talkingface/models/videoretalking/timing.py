"""Random networks in the release's layouts, for timing VideoReTalking's whole dub offline. FOR TIMING ONLY: the
pictures these networks make mean nothing.

``videoretalking.timing_networks: true`` (what ``talkingface benchmark --model videoretalking`` sets, and what
``benchmarks/videoretalking_dubbing.py`` builds on) replaces every network a dub would load from ``checkpoint_dir``
with seeded random weights in the released layout, so that every stage runs with the release's shapes and FLOPs:

- ``enhancement_networks`` / ``timing_enhancement``: GPEN-BFR-512, GFPGANv1.3, ParseNet and RetinaFace-R50 (seed 1);
- ``timing_stabiliser``: a ``Stabiliser`` on the model's D-Net with a random ReconNet and a random expression
  template (seed 2; the ``expression`` option is not read), and align_img's 3D landmark template from ``bfm_folder``
  (a geometry file, not a network: ``standin_bfm`` writes the synthetic stand-in's).

D-Net, L-Net and E-Net are the model's own (random unless loaded). A RetinaFace with random weights finds no face, so
the enhancement would skip every step: ``KnownFaceRetinaFace`` runs the random network on every input (its cost is
measured), then returns raw outputs that decode to a known face (``known_face``: the box and five points of 68
landmarks) for that input's size, so that the post-processing (ours, GPEN's and facexlib's conventions) runs as on a
real face. The dubbing hooks name the face per image with ``known_faces``: the frame's own tracked landmarks for the
frame enhancement and the blend, the same landmarks mapped into the 256 FFHQ crop for the reference enhancement.

Which wins where both are there: the setting. With it on, the released files are never read, even where they are
present (the model's warning names the ones it ignores); with it off (the default) nothing here is used.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from ...errors import CheckpointError
from ...face.parsenet import PARSENET_LATEST, ParseNet
from ...face.retinaface import RETINAFACE_R50, VARIANCES, RetinaFace, detection_scale, prior_boxes
from ...face3d import VIDEORETALKING_FACE3D, ReconNet, load_lm3d
from ...face3d.bfm_files import LANDMARKS_3D
from ...restoration.gfpgan import GFPGAN_V13, gfpgan_v13
from ...restoration.gpen import GPEN_BFR_512, gpen_bfr_512
from .releases import EXPRESSION_MAT

if TYPE_CHECKING:
    from .enhance import EnhancementNets
    from .stabilise import Stabiliser

logger = logging.getLogger(__name__)

Face = tuple[np.ndarray, np.ndarray]  # box [x1, y1, x2, y2] and five points (5, 2), in the image's pixels
ENHANCEMENT_SEED = 1
STABILISER_SEED = 2
TEMPLATE_SCALE = 0.5  # the random expression template: N(0, 0.5²) per coefficient
KNOWN_SCORE = 0.99    # the known face's score (above GPEN's 0.9 and facexlib's 0.97)
OTHER_SCORE = 0.001   # every other prior's
STANDIN_FOLDER = "videoretalking_standin_bfm"  # benchmark_config's stand-in align_img template, under its work folder

RELEASE_LAYOUTS: dict[str, Callable[[], nn.Module]] = {
    "gpen": gpen_bfr_512, "gfpgan": gfpgan_v13, "parsenet": ParseNet, "retinaface": RetinaFace, "recon": ReconNet}
"""The constructors of the released layouts the timing networks are built in (tests put narrow ones in)."""
REPLACED_FILES = (VIDEORETALKING_FACE3D, EXPRESSION_MAT, GPEN_BFR_512, GFPGAN_V13, PARSENET_LATEST, RETINAFACE_R50)

_KNOWN: contextvars.ContextVar[dict[tuple[int, int], Face] | None] = contextvars.ContextVar(
    "videoretalking_known_faces", default=None)


# ---- known faces ---------------------------------------------------------------------------------------------------
def five_points(landmarks: np.ndarray) -> np.ndarray:
    """RetinaFace's five points (eyes, nose tip, mouth corners; image left first) from 68 landmarks."""
    lm = np.asarray(landmarks, np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def known_face(landmarks: np.ndarray) -> Face:
    """(box [x1, y1, x2, y2], points (5, 2)): the landmarks' box with its top raised by a quarter (the forehead)."""
    lm = np.asarray(landmarks, np.float64)
    (x1, y1), (x2, y2) = lm.min(0), lm.max(0)
    return np.array([x1, y1 - 0.25 * (y2 - y1), x2, y2]), five_points(lm)


def faces_for(landmarks: np.ndarray, frame_size: tuple[int, int]) -> dict[tuple[int, int], Face]:
    """Known faces of one frame's landmarks for the frame (``frame_size = (width, height)``) and for the 256 FFHQ
    crop the stabiliser cuts with the box of these landmarks (``crop_landmarks``)."""
    from .ffhq_crop import ffhq_crop
    from .stabilise import CROP_OUTPUT_SIZE, FACE_SIZE, crop_landmarks

    width, height = frame_size
    crop = ffhq_crop(landmarks, (width, height), CROP_OUTPUT_SIZE)
    return {(height, width): known_face(landmarks),
            (FACE_SIZE, FACE_SIZE): known_face(crop_landmarks(landmarks, crop, (width, height)))}


@contextlib.contextmanager
def known_faces(faces: Mapping[tuple[int, int], Face]) -> Iterator[None]:
    """Within the block (this thread's context only), every ``KnownFaceRetinaFace`` reports ``faces[(height,
    width)]`` for an image of that size, before the faces it was built with."""
    token = _KNOWN.set({tuple(int(v) for v in size): face for size, face in faces.items()})
    try:
        yield
    finally:
        _KNOWN.reset(token)


@functools.lru_cache(maxsize=8)
def _priors(height: int, width: int) -> np.ndarray:
    """RetinaFace's float32 priors of an input size, as float64 (the values decoding uses)."""
    return prior_boxes(height, width).double().numpy()


def detector_outputs(face: Face | None, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RetinaFace's raw outputs for a ``height`` x ``width`` input, float32 ``(loc (1, N, 4), scores (1, N, 2),
    landmarks (1, N, 10))``, that decode to ``face`` (box and five points in input pixels) with score 0.99 on the prior
    nearest its centre, every other prior scoring 0.001; no face at all where ``face`` is None."""
    priors = _priors(height, width)
    loc, marks = np.zeros((len(priors), 4)), np.zeros((len(priors), 10))
    scores = np.full(len(priors), OTHER_SCORE)
    if face is not None:
        box, points = (np.asarray(a, np.float64) for a in face)
        size = np.array([width, height], np.float64)
        centre = (box[:2] + box[2:]) / 2 / size
        index = int(np.argmin(np.abs(priors[:, :2] - centre).sum(axis=1)))
        prior_centre, prior_size = priors[index, :2], priors[index, 2:]
        loc[index, :2] = (centre - prior_centre) / (VARIANCES[0] * prior_size)
        loc[index, 2:] = np.log((box[2:] - box[:2]) / size / prior_size) / VARIANCES[1]
        marks[index] = ((points.reshape(5, 2) / size - prior_centre) / (VARIANCES[0] * prior_size)).ravel()
        scores[index] = KNOWN_SCORE
    conf = np.stack([1 - scores, scores], axis=1)
    return tuple(torch.from_numpy(a[None].astype(np.float32)) for a in (loc, conf, marks))  # type: ignore[return-value]


class KnownFaceRetinaFace(nn.Module):
    """RetinaFace-R50 (random weights) run on every input for its cost, returning outputs that decode to the known
    face of that input's size: ``known_faces(...)``'s, else ``faces[(height, width)]`` given here (score 0.99, every
    other prior 0.001). A known image over 1500 px that GPEN's ``detect`` shrinks gets its face shrunk alike. Inputs
    of other sizes get no face (a random network's own scores are not detections)."""

    def __init__(self, network: nn.Module, faces: Mapping[tuple[int, int], Face] | None = None):
        super().__init__()
        self.network = network
        self.faces = dict(faces or {})

    def face_for(self, height: int, width: int) -> Face | None:
        """The known face of a ``height`` x ``width`` network input, or None."""
        faces = {**self.faces, **(_KNOWN.get() or {})}
        if (height, width) in faces:
            return faces[(height, width)]
        for (h, w), (box, points) in faces.items():  # GPEN's detect shrinks images over 1500 px by ss
            scale = detection_scale(h, w)
            if scale != 1.0 and (int(round(h * scale)), int(round(w * scale))) == (height, width):
                return np.asarray(box) * scale, np.asarray(points) * scale
        return None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.network(x)
        height, width = (int(s) for s in x.shape[-2:])
        outputs = detector_outputs(self.face_for(height, width), height, width)
        return tuple(t.expand(len(x), *t.shape[1:]).to(x.device) for t in outputs)


# ---- the networks --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch's CPU generator seeded with ``seed`` inside the block; the caller's state restored after it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def enhancement_networks(faces: Mapping[tuple[int, int], Face] | None = None,
                         seed: int = ENHANCEMENT_SEED) -> dict[str, nn.Module]:
    """Random GPEN-BFR-512, GFPGANv1.3, ParseNet and RetinaFace-R50 (in ``KnownFaceRetinaFace`` with ``faces``), in
    the released layouts (``RELEASE_LAYOUTS``), seeded, in eval mode, on the CPU."""
    with seeded(seed):
        nets = {name: RELEASE_LAYOUTS[name]().eval() for name in ("gpen", "gfpgan", "parsenet", "retinaface")}
    nets["retinaface"] = KnownFaceRetinaFace(nets["retinaface"], faces).eval()
    return nets


def enhancement(nets: Mapping[str, nn.Module], device: str | torch.device = "cpu") -> "EnhancementNets":
    """``enhancement_networks``' networks as the chain's ``EnhancementNets`` on ``device``."""
    from ...device import resolve_device
    from .enhance import EnhancementNets

    device = device if isinstance(device, torch.device) else resolve_device(device)
    gpen, gfpgan, parsenet = (nets[name].to(device) for name in ("gpen", "gfpgan", "parsenet"))
    return EnhancementNets.from_networks(nets["retinaface"], gpen, gfpgan, parsenet, device=device)


def timing_enhancement(device: str | torch.device = "cpu") -> "EnhancementNets":
    """The whole enhancement chain with random networks (faces named per image with ``known_faces``)."""
    return enhancement(enhancement_networks(), device)


def standin_bfm(folder: str | Path) -> Path:
    """``folder`` holding the synthetic stand-in's align_img template (``similarity_Lm3D_all.mat``), written once."""
    from ...face3d.standin import write_standin_bfm

    folder = Path(folder)
    if not (folder / LANDMARKS_3D).is_file():
        write_standin_bfm(folder, raw=False, derived=False)
    return folder


def timing_stabiliser(dnet: nn.Module, bfm_folder: str | Path, device: str | torch.device = "cpu", batch: int = 8,
                      seed: int = STABILISER_SEED) -> "Stabiliser":
    """A ``Stabiliser`` on ``dnet`` with a random ReconNet and a random expression template (seeded), and align_img's
    template from ``bfm_folder`` (CheckpointError naming it where it is missing)."""
    from .stabilise import EXPRESSION_DIM, Stabiliser

    path = Path(bfm_folder) / LANDMARKS_3D
    if not path.is_file():
        raise CheckpointError(f"{path} not found: align_img's 3D landmark template, which the timing networks read "
                              f"(a geometry file, not a network); `talkingface face3d standin` writes a synthetic "
                              f"stand-in (docs/face3d.md), or set videoretalking.bfm_folder to the BFM folder")
    with seeded(seed):
        recon = RELEASE_LAYOUTS["recon"]().eval()
        template = torch.randn(EXPRESSION_DIM) * TEMPLATE_SCALE
    return Stabiliser(dnet, recon, load_lm3d(bfm_folder), template, device, batch)


def warn_timing_networks(checkpoint_dir: str | Path) -> None:
    """The warning a model built with ``timing_networks`` gives: what is random, and the released files it ignores."""
    present = [w.filename for w in REPLACED_FILES if (Path(checkpoint_dir) / w.filename).is_file()]
    ignored = f"; the released files in {checkpoint_dir} are NOT used: {', '.join(present)}" if present else ""
    logger.warning("videoretalking.timing_networks: ReconNet, the expression template, GPEN-BFR-512, GFPGANv1.3, "
                   "ParseNet and RetinaFace-R50 are seeded random networks in the release's layouts, and RetinaFace "
                   "reports the tracked face: for timing only, the pictures mean nothing%s", ignored)
