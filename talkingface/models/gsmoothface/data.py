"""GSmoothFace's A2EP training data from the clip store, as the official ``Face3DMMOneHotDataset`` builds it
(zhanghm1995/GSmoothFace at acdc6d6: ``dataset/face_3dmm_one_hot_dataset.py``, ``dataset/base_video_dataset.py``,
``dataset/basic_bfm.py``, ``dataset/face_3dmm_utils.py``; the loss of ``models/face_3dmm_one_hot_former.py``):

- ``normalise_waveform``: ``Wav2Vec2Processor``'s zero-mean unit-variance normalisation of one audio slice;
- ``speaker_table`` / ``speaker_index``: the one-hot speaker code (the official ``np.eye(8)[video index]``);
- ``A2EPWindows``: windows of ``fetch_length`` frames every ``fetch_stride`` frames with their audio slice, the
  template face, the ground-truth vertices and the expression basis;
- ``mouth_weights`` / ``vertex_loss``: the mouth-weighted vertex loss (1.8 on the "big mouth" vertices).

Clips are read from ``<clip>/face3d/coeffs.npy`` (the ``face3d`` step, Deep3DFaceRecon convention) and
``<clip>/audio.wav``; vertices are computed per item from the coefficients (nothing per vertex is cached).
"""
from __future__ import annotations

import logging
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from ...errors import ConfigError, DataError
from ...face3d import ParametricFaceModel
from ...media import read_audio

logger = logging.getLogger(__name__)

MOUTH_WEIGHT = 1.8  # the official `mouth_mask[binary_mouth_mask] = 1.8`
MOUTH_KEYPOINTS = tuple(range(48, 68))  # iBUG 68: outer lips 48-59, inner lips 60-67
DERIVED_MOUTH_RADIUS = 0.4  # the derived region: within this fraction of the mouth width of a lip keypoint
SPEAKER_GROUPING = ("source", "clip")


# ---- audio ---------------------------------------------------------------------------------------------------------
def normalise_waveform(x: np.ndarray) -> np.ndarray:
    """``Wav2Vec2Processor``'s normalisation of one slice: ``(x - mean) / sqrt(var + 1e-7)``, float32 in and out.

    As transformers' ``Wav2Vec2FeatureExtractor`` (``do_normalize=True``, no padding, so no attention mask) does it:
    a float64 input is cast to float32 first (``pad``), then ``zero_mean_unit_var_norm`` computes numpy's float32
    ``mean()`` and population ``var()`` (ddof 0) of the slice and divides by ``np.sqrt(var + 1e-7)``, the same
    expression, so under the same numpy the bits are the same. Each slice is normalised on its own (the official
    dataset calls the processor per window)."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"normalise_waveform expects one mono slice (L,), got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    if x.size == 0:
        return x.copy()
    return np.asarray((x - x.mean()) / np.sqrt(x.var() + 1e-7), dtype=np.float32)


class ClipAudio:
    """A clip's ``audio.wav`` read by slices: a 16-bit mono PCM WAV at ``sample_rate`` (what the store writes) is read
    directly at the slice's position (``int16 / 32768``, the values librosa and PyAV decode); any other file is decoded
    once with ``read_audio`` (resampled to ``sample_rate``) and kept."""

    def __init__(self, path: str | Path, sample_rate: int):
        self.path, self.sample_rate = Path(path), int(sample_rate)
        self._samples: np.ndarray | None = None
        try:
            with wave.open(str(self.path), "rb") as handle:
                direct = (handle.getnchannels() == 1 and handle.getsampwidth() == 2
                          and handle.getframerate() == self.sample_rate and handle.getcomptype() == "NONE")
                self.length = handle.getnframes()
        except (wave.Error, EOFError, OSError):
            direct = False
        if not direct:
            self._samples = read_audio(self.path, self.sample_rate)  # MediaError naming the file
            self.length = len(self._samples)

    def slice(self, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)`` as float32 (shorter at the end of the file, as numpy slicing)."""
        start, end = max(int(start), 0), min(int(end), self.length)
        if self._samples is not None:
            return self._samples[start:end]
        if end <= start:
            return np.zeros(0, np.float32)
        with wave.open(str(self.path), "rb") as handle:
            handle.setpos(start)
            data = handle.readframes(end - start)
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(32768.0)


# ---- speakers ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpeakerTable:
    """The one-hot speaker code: ``speakers`` in one-hot order (sorted names), ``clips`` each listed clip's speaker,
    ``num_speakers`` the code's length (the style layer's input size), ``by`` how clips were grouped."""

    speakers: tuple[str, ...]
    clips: Mapping[str, str] = field(default_factory=dict)
    num_speakers: int = 8
    by: str = "source"

    def one_hot(self, index: int) -> np.ndarray:
        """``(num_speakers,)`` float32 with a 1 at ``index`` (the official ``np.eye(8)[index]``)."""
        return np.eye(self.num_speakers, dtype=np.float32)[int(index)]

    def as_dict(self) -> dict:
        """JSON-ready, for a checkpoint (``from_dict`` reads it back)."""
        return {"speakers": list(self.speakers), "clips": dict(self.clips), "num_speakers": self.num_speakers,
                "by": self.by}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SpeakerTable":
        return cls(tuple(data["speakers"]), dict(data.get("clips", {})), int(data["num_speakers"]),
                   str(data.get("by", "source")))


def _clip_groups(clips: list[Any], by: str) -> dict[str, list[str]]:
    """Speaker name -> its clips. ``by="source"``: clips cut from the same source video (``meta.json``'s ``source``)
    are one speaker, named after its first clip (sorted); a clip without a source is its own speaker. ``"clip"``:
    one speaker per clip."""
    if by not in SPEAKER_GROUPING:
        raise ConfigError(f"speaker grouping {by!r}: expected one of {', '.join(SPEAKER_GROUPING)}")
    groups: dict[Any, list[str]] = {}
    for clip in clips:
        source = clip.meta.get("source") if by == "source" else None
        groups.setdefault(("source", str(source)) if source else ("clip", clip.name), []).append(clip.name)
    return {min(names): sorted(names) for names in groups.values()}


def speaker_table(store: Any, split: str = "train", num_speakers: int = 8, by: str = "source") -> SpeakerTable:
    """The speaker table of ``split`` (the training split): one speaker per source video (``by="source"``, the
    official unit: one HDTF video per one-hot position, the clips an HDTF video is cut into share it) or per clip
    (``by="clip"``), sorted by name; ``num_speakers`` positions. ConfigError when the split has more speakers."""
    clips = store.split(split)
    if not clips:
        raise DataError(f"{store.root} split {split!r} has no clips: no speakers for GSmoothFace's one-hot code")
    groups = _clip_groups(clips, by)
    speakers = tuple(sorted(groups))
    if len(speakers) > int(num_speakers):
        raise ConfigError(
            f"{store.root} split {split!r} has {len(speakers)} speakers (by {by}: {', '.join(speakers[:4])}"
            f"{', ...' if len(speakers) > 4 else ''}) but num_speakers={num_speakers}: the one-hot speaker code has "
            f"one position per training speaker (the official np.eye(8) holds its 8 training videos); set "
            f"num_speakers to at least {len(speakers)}, or train on fewer speakers")
    return SpeakerTable(speakers, {name: speaker for speaker, names in groups.items() for name in names},
                        int(num_speakers), by)


def speaker_index(table: SpeakerTable, name: str | int) -> int:
    """The one-hot position of a speaker, given its name, one of its training clips' names or the position itself
    (the official test set: ``train.txt``'s index of the conditioning video); ConfigError listing the speakers."""
    if isinstance(name, (int, np.integer)):
        if 0 <= int(name) < len(table.speakers):
            return int(name)
    elif name in table.speakers:
        return table.speakers.index(name)
    elif name in table.clips:
        return table.speakers.index(table.clips[name])
    known = ", ".join(table.speakers[:8]) + (", ..." if len(table.speakers) > 8 else "")
    raise ConfigError(f"unknown GSmoothFace speaker {name!r}: the model was trained with {len(table.speakers)} "
                      f"speaker(s): {known} (give a speaker name, one of its clips or an index "
                      f"0..{len(table.speakers) - 1})")


# ---- windows -------------------------------------------------------------------------------------------------------
def read_gsmoothface_face3d(clip: Any) -> np.ndarray:
    """The clip's ``(T, 257)`` coefficients in Deep3DFaceRecon's order (id, exp, tex, angle, gamma, trans)."""
    return read_face3d_with_params(clip)[0]


def read_face3d_with_params(clip: Any) -> tuple[np.ndarray, np.ndarray]:
    """The clip's ``(coeffs (T, 257), align_img transform params (T, 5))``; DataError unless the face3d step ran in
    Deep3DFaceRecon's convention (its align_img crop)."""
    from ...data.face3d_step import read_face3d

    face3d = read_face3d(clip)
    if face3d.info.get("convention") != "deep3dfacerecon" or face3d.info.get("crop") != "align_img":
        raise DataError(f"{clip.root}/face3d holds {face3d.info.get('convention')} coefficients; GSmoothFace needs "
                        f"Deep3DFaceRecon's (preprocess with --face3d.convention=deep3dfacerecon)")
    return face3d.coeffs, face3d.crop_params


def window_starts(count: int, fetch_length: int, fetch_stride: int) -> list[int]:
    """The official ``get_all_valid_indices``: ``range(0, count - fetch_length, fetch_stride)``. The end is
    exclusive of ``count - fetch_length`` itself, so a window ending exactly at the last frame is never taken (a clip
    of exactly ``k * stride + fetch_length`` frames loses its last full window, one of exactly ``fetch_length`` frames
    gives none); the official code has the line adding it commented out."""
    return list(range(0, int(count) - int(fetch_length), int(fetch_stride)))


def audio_bounds(start: int, end: int, fps: float, sample_rate: int) -> tuple[int, int]:
    """Samples of frames ``[start, end)``: ``round(start / fps * sr)``, ``round(end / fps * sr)`` (Python's round,
    half to even, of the same float expression as ``_slice_raw_audio``)."""
    return round(start / fps * sample_rate), round(end / fps * sample_rate)


@dataclass
class _Clip:
    name: str
    coeffs: np.ndarray
    audio: ClipAudio
    one_hot: np.ndarray


class A2EPWindows(Dataset):
    """A2EP's training items, as ``Face3DMMOneHotDataset`` (``use_template_face: False``) returns them.

    Every clip of ``split`` gives windows of ``fetch_length`` frames starting every ``fetch_stride`` frames, at
    ``window_starts`` (the official quirk: the last full window is left out). A window is skipped, with a count in
    ``skipped``, when

    - its audio slice ``audio_bounds(start, start + fetch_length)`` runs past the end of the clip's audio (the official
      ``_slice_raw_audio`` returns None and ``collate_fn`` drops the item; here it is left out of the index instead);
    - one of its frames has no face (``clip.face_valid()``: no landmarks there; the official data has a fitted
      ``.mat`` for every frame, so it has no such case; the face3d step gives such frames a neighbour's
      coefficients, which are not ground truth).

    Item (the official batch keys, batch axis added by the loader):

    - ``raw_audio`` (L,) float32: the slice normalised on its own (``normalise_waveform``);
    - ``template`` (T, 3N) float32: the recentred mean shape + that frame's ``id @ idBase.T`` (no expression);
    - ``face_vertex`` (T, 3N) float32: mean + (``id @ idBase.T`` + ``exp @ exBase.T``), the official order of sums;
    - ``one_hot`` (num_speakers,) float32: the clip's speaker in ``table``; a clip whose speaker is not in the table
      (a validation clip of another video) gets the position of its speaker among the split's own speakers, as the
      official validation set indexes ``np.eye(8)`` by the video's position in ``val.txt``;
    - ``exp_base`` (3N, 64) float32: the expression basis (one shared tensor);
    - ``exp`` (T, 64) float32: the frames' expression coefficients (``gt_face_3d_params``);
    - ``clip`` (str) and ``start`` (int): where the window comes from.

    ``face_model`` must be in the Deep3DFaceRecon convention with its mean shape recentred (as ``BFMModelPyTorch``).
    ``fps``: the frame rate of the coefficients (None: the clip's ``meta.json`` ``fps``, else 25). ``feature``: a
    registered per-frame audio feature of the store (A2EP with ``audio_encoder: feature``): ``raw_audio`` is then
    that feature's (T, F) rows of the window's frames, flattened per frame, instead of the waveform.
    """

    def __init__(self, store: Any, split: str, face_model: ParametricFaceModel, table: SpeakerTable,
                 fetch_length: int = 100, fetch_stride: int = 100, fps: float | None = None,
                 sample_rate: int = 16000, feature: str | None = None):
        if face_model.convention.name != "deep3dfacerecon" or not face_model.recenter:
            raise ConfigError(f"GSmoothFace needs the Deep3DFaceRecon face model with a recentred mean shape, got the "
                              f"{face_model.convention.name} convention (recenter={face_model.recenter})")
        if int(fetch_length) < 1 or int(fetch_stride) < 1:
            raise ConfigError(f"fetch_length={fetch_length}, fetch_stride={fetch_stride}: both must be at least 1")
        self.face_model = face_model
        self.fetch_length, self.fetch_stride = int(fetch_length), int(fetch_stride)
        self.sample_rate = int(sample_rate)
        self.feature = feature
        self.rows: list[np.ndarray | None] = []
        self.id_slice, self.exp_slice = face_model.coeff_slices["id"], face_model.coeff_slices["exp"]
        self.mean_shape = face_model.tensor("mean_shape")  # (1, 3N), recentred
        self.id_base = face_model.tensor("id_base")  # (3N, 80)
        self.exp_base = face_model.tensor("exp_base")  # (3N, 64)
        clips = store.split(split)
        groups = _clip_groups(clips, table.by)  # the split's own speakers, for clips the table does not know
        own = {clip: k for k, speaker in enumerate(sorted(groups)) for clip in groups[speaker]}
        self.clips: list[_Clip] = []
        self.index: list[tuple[int, int, int, int]] = []  # (clip slot, start frame, first sample, end sample)
        self.skipped = {"audio": 0, "no_face": 0}
        unseen = []
        for clip in clips:
            coeffs = read_gsmoothface_face3d(clip)
            if coeffs.ndim != 2 or coeffs.shape[1] != face_model.num_coeffs:
                raise DataError(f"{clip.root}/face3d/coeffs.npy: shape {coeffs.shape}, expected (T, "
                                f"{face_model.num_coeffs})")
            if clip.name in table.clips:
                position = table.speakers.index(table.clips[clip.name])
            else:
                position = own[clip.name]
                unseen.append(clip.name)
                if position >= table.num_speakers:
                    raise ConfigError(f"{store.root} split {split!r}: clip {clip.name} is not a training speaker and "
                                      f"its position among the split's {len(groups)} speakers is past "
                                      f"num_speakers={table.num_speakers}")
            count = len(coeffs)
            valid = np.zeros(count, bool)
            marks = clip.face_valid()[:count]
            valid[:len(marks)] = marks
            rate = float(clip.meta.get("fps", 25.0)) if fps is None else float(fps)
            audio = ClipAudio(clip.audio_path, self.sample_rate)
            rows = None
            if feature is not None:
                rows = clip.feature(feature)
                rows = rows.reshape(len(rows), -1).astype(np.float32)
                valid[len(rows):] = False  # frames without feature rows cannot be windows
            self.rows.append(rows)
            slot = len(self.clips)
            self.clips.append(_Clip(clip.name, coeffs, audio, table.one_hot(position)))
            for start in window_starts(count, self.fetch_length, self.fetch_stride):
                first, end = audio_bounds(start, start + self.fetch_length, rate, self.sample_rate)
                if end > audio.length:
                    self.skipped["audio"] += 1
                elif not valid[start:start + self.fetch_length].all():
                    self.skipped["no_face"] += 1
                else:
                    self.index.append((slot, start, first, end))
        if not self.index:
            raise DataError(f"{store.root} split {split!r}: no GSmoothFace window of {self.fetch_length} frames in "
                            f"{len(self.clips)} clip(s) (a clip needs more than fetch_length frames with a face and "
                            f"its audio; skipped: {self.skipped['audio']} for short audio, {self.skipped['no_face']} "
                            f"for a frame without a face)")
        if unseen:
            logger.info("%s split %s: %d clip(s) of speakers not in the training table get one-hot positions by "
                        "their order in the split (as the official validation set): %s", store.root, split,
                        len(unseen), ", ".join(unseen[:4]))
        logger.info("GSmoothFace %s windows: %d from %d clips (fetch_length %d, stride %d); skipped %d with short "
                    "audio, %d with a frame without a face", split, len(self.index), len(self.clips),
                    self.fetch_length, self.fetch_stride, self.skipped["audio"], self.skipped["no_face"])

    def __len__(self) -> int:
        return len(self.index)

    def vertices(self, coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(template, face_vertex)``, each (T, 3N), of (T, 257) coefficients (``BFMModelPyTorch.compute_shape``
        with and without the expression)."""
        identity = coeffs[:, self.id_slice] @ self.id_base.T
        expression = coeffs[:, self.exp_slice] @ self.exp_base.T
        return self.mean_shape + identity, self.mean_shape + (identity + expression)

    def __getitem__(self, index: int) -> dict[str, Any]:
        slot, start, first, end = self.index[index]
        clip = self.clips[slot]
        coeffs = torch.from_numpy(np.ascontiguousarray(clip.coeffs[start:start + self.fetch_length], np.float32))
        template, face_vertex = self.vertices(coeffs)
        rows = self.rows[slot]
        audio = (normalise_waveform(clip.audio.slice(first, end)) if rows is None
                 else np.ascontiguousarray(rows[start:start + self.fetch_length]))
        return {"raw_audio": torch.from_numpy(audio),
                "template": template, "face_vertex": face_vertex, "one_hot": torch.from_numpy(clip.one_hot),
                "exp_base": self.exp_base, "exp": coeffs[:, self.exp_slice].clone(), "clip": clip.name,
                "start": start}


# ---- mouth weights and the loss ------------------------------------------------------------------------------------
def mouth_region(points: np.ndarray, keypoints: np.ndarray, radius: float = DERIVED_MOUTH_RADIUS) -> np.ndarray:
    """``(N,)`` bool: the vertices of ``points`` (N, 3) within ``radius`` times the mouth width (the distance of the
    mouth corners 48 and 54) of one of the lip keypoints 48-67 (``keypoints``: 68 vertex indices, iBUG order).
    Scale-free: a face model in other units gives the same vertices."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    keypoints = np.asarray(keypoints, np.int64).reshape(-1)
    lips = points[keypoints[list(MOUTH_KEYPOINTS)]]
    width = float(np.linalg.norm(points[keypoints[54]] - points[keypoints[48]]))
    if not width > 0:
        raise DataError("the face model's mouth corners (keypoints 48 and 54) coincide: no mouth width to scale by")
    distance = np.sqrt(((points[:, None, :] - lips[None, :, :]) ** 2).sum(-1)).min(axis=1)
    return distance <= float(radius) * width


def derived_mouth_mask(face_model: ParametricFaceModel, radius: float = DERIVED_MOUTH_RADIUS) -> np.ndarray:
    """Our stand-in for the unshipped ``data/big_mouth_mask.npy``: ``mouth_region`` of the face model's mean shape.

    Why this region: the official mask is a bool mask (or index array) over BFM's 35,709 front vertices named a "big"
    mouth mask, and the only hint of its content is a commented line next to where it is loaded in TAFT's
    ``visualizer/render_utils.py`` (zhanghm1995/GSmoothFace_TAFT), ``pred_vertex[0, :, 1] < -0.15``. That threshold is
    in absolute decimetres on posed camera-space vertices, so it depends on the pose, on the face model's scale and
    centring (it takes 46 % of the 300-vertex stand-in: the whole lower face, cheeks and jaw line included), and it
    was written for a colour mask, not the loss. The lips and the skin around them are what the mouth weight is for,
    and the 68 keypoints exist in every face model file (BFM's ``keypoints`` and the stand-in's), so the region is
    taken around the lip keypoints 48-67 with a radius relative to the mouth width: the same part of the face on
    BFM and on the stand-in. The default 0.4 mouth widths (about 2 cm on an adult face, whose mouth is about 5 cm
    wide) holds the lips and the skin that moves with them, from the base of the nose to above the chin point; the
    nose tip (keypoint 30, 0.51-0.56 mouth widths from the lips on the stand-ins) and the chin point (8, 0.58 or
    more) stay out. On the stand-in it is 19 % of the 300-vertex and 14 % of the 2,000-vertex mesh. Not checked on
    the real BFM (not available here) nor against the unshipped file."""
    points = face_model.tensor("mean_shape").numpy().reshape(-1, 3)
    return mouth_region(points, face_model.tensor("keypoints").numpy(), radius)


def read_mouth_mask(path: str | Path, num_vertices: int) -> np.ndarray:
    """``(num_vertices,)`` bool from a user's ``big_mouth_mask.npy``: a bool mask over the vertices, or an integer
    array of vertex indices (the official ``mouth_mask[binary_mouth_mask] = 1.8`` accepts both). DataError naming the
    file for a wrong length, an index out of range, another dtype, or a 0/1 integer array over all vertices (a mask
    stored as integers, which numpy would read as the indices 0 and 1)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"mouth mask {path} not found (the official data/big_mouth_mask.npy is not shipped; use "
                        f"'derived' for the region derived from the face model's lip keypoints)")
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"mouth mask {path}: not a readable .npy array ({exc})") from exc
    values = np.asarray(values)
    if values.ndim > 1 and sum(s > 1 for s in values.shape) <= 1:
        values = values.reshape(-1)
    if values.ndim != 1:
        raise DataError(f"mouth mask {path}: shape {values.shape}, expected a bool mask ({num_vertices},) or a 1-D "
                        f"array of vertex indices")
    mask = np.zeros(num_vertices, bool)
    if values.dtype == np.bool_:
        if len(values) != num_vertices:
            raise DataError(f"mouth mask {path}: a bool mask over {len(values)} vertices, the face model has "
                            f"{num_vertices} (the official file is over BFM's 35709 front vertices; with another "
                            f"face model use 'derived')")
        return values.copy()
    if not np.issubdtype(values.dtype, np.integer):
        raise DataError(f"mouth mask {path}: dtype {values.dtype}, expected bool (a mask) or integers (vertex indices)")
    if len(values) == num_vertices and values.size and set(np.unique(values).tolist()) <= {0, 1}:
        raise DataError(f"mouth mask {path}: {num_vertices} integers that are all 0 or 1, a mask stored as integers "
                        f"(numpy would index vertices 0 and 1 with it); save it as bool")
    if values.size and (values.min() < 0 or values.max() >= num_vertices):
        raise DataError(f"mouth mask {path}: vertex indices {values.min()}..{values.max()} outside 0.."
                        f"{num_vertices - 1} (the face model has {num_vertices} vertices)")
    mask[values] = True
    return mask


def mouth_weights(face_model: ParametricFaceModel, source: str | Path = "derived", weight: float = MOUTH_WEIGHT,
                  radius: float = DERIVED_MOUTH_RADIUS) -> torch.Tensor:
    """``(N,)`` float32 per-vertex loss weights: ``weight`` (1.8) on the mouth vertices, 1 elsewhere. ``source``: the
    path of a ``big_mouth_mask.npy`` (``read_mouth_mask``) or ``"derived"`` (``derived_mouth_mask``)."""
    if str(source) == "derived":
        mask = derived_mouth_mask(face_model, radius)
    else:
        mask = read_mouth_mask(source, face_model.num_vertices)
    weights = torch.ones(face_model.num_vertices, dtype=torch.float32)
    weights[torch.from_numpy(mask)] = float(weight)
    return weights


def vertex_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The official mouth-weighted loss: the mean over the batch, frames and vertices of ``sum_xyz (pred - target)^2
    * weight`` (``weights`` (N,), None: all 1). ``pred``, ``target``: (..., 3N), x, y, z interleaved per vertex.
    (The official ``use_mouth_mask: False`` path is instead ``MSELoss``, the mean over the 3N coordinates.)"""
    if pred.shape != target.shape or pred.shape[-1] % 3:
        raise ValueError(f"vertex_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} must be the same "
                         f"(..., 3N)")
    per_vertex = ((pred - target).reshape(*pred.shape[:-1], -1, 3) ** 2).sum(-1)  # (..., N)
    if weights is not None:
        if weights.numel() != per_vertex.shape[-1]:
            raise ValueError(f"vertex_loss: {weights.numel()} weights for {per_vertex.shape[-1]} vertices")
        per_vertex = per_vertex * weights.reshape(-1).to(per_vertex)
    return per_vertex.mean()
