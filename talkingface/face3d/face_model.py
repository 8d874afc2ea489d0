"""The parametric face model: 3DMM coefficients -> vertices in camera space, albedo, spherical-harmonics-lit
colours and 68 projected landmarks, batched torch on the inputs' device and dtype.

Two conventions, selected by name (``CONVENTIONS``): ``deep3dfacerecon`` computes what Deep3DFaceRecon's
``models/bfm.py: ParametricFaceModel`` computes from ``BFM_model_front.mat`` (VideoReTalking, GSmoothFace), and
``audiodvp`` what AudioDVP's ``renderer/face_model.py: FaceModel`` computes from its ``data.mat``. They differ in
the coefficient order, the pose (translation before or after the rotation), the camera, the SH coefficient layout
and initial light, the face normals and the mean shape's centring: ``FaceConvention`` and docs/face3d.md,
"Parametric face model".
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from . import bfm_files as bf

logger = logging.getLogger(__name__)

# The iBUG 68-point left-right mirror: landmark k of a mirrored face is landmark MIRROR_68[k]. AudioDVP's literal
# landmark vertex list is facemodel_info.mat's keypoints (minus 1) in this order (checked on the real file).
MIRROR_68 = np.array(list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30, 35, 34, 33, 32, 31]
                     + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
                     + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65])

# Spherical-harmonics constants of both codes: a_n (Lambertian kernel) and c_n (basis normalisation).
SH_A = (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0))
SH_C = (1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi),
        3 * math.sqrt(5.0) / math.sqrt(12 * math.pi))
FIXED_BLOCKS = {"angle": 3, "gamma": 27, "trans": 3}


@dataclass(frozen=True)
class FaceConvention:
    """How one code base turns coefficients into a face (the fields are the differences between the two).

    ``order``: the coefficient blocks of the (B, 257) vector; ``model_file``: the derived file it reads;
    ``camera_distance``, ``focal``, ``center``: its pinhole camera (pixels); ``init_lit``: added to each colour
    channel's ambient SH coefficient; ``gamma_channel_major``: the 27 SH coefficients read as (3 channels, 9 bands)
    rather than (9 bands, 3 channels); ``recenter``: subtract the mean vertex from the mean shape;
    ``unit_face_normals``: normalise triangle normals before summing them per vertex; ``translate_first``:
    ``(v - t) R^T`` rather than ``v R^T + t``; ``mirrored_camera``: the camera images x and y negated (a camera
    with up = -y) and the landmark list is mirrored to match; ``texture_divisor``: what the albedo is divided by;
    ``fov_y``: for a gluPerspective camera, its vertical field of view in degrees (``to_image`` then computes
    ``(cot(fov_y / 2) x / z + 1) center`` as that camera does; ``focal`` = cot(fov_y / 2) ``center``).
    """

    name: str
    model_file: str
    order: tuple[str, ...]
    camera_distance: float
    focal: float
    center: float
    init_lit: float
    gamma_channel_major: bool
    recenter: bool
    unit_face_normals: bool
    translate_first: bool
    mirrored_camera: bool
    texture_divisor: float
    fov_y: float | None = None


DEEP3DFACERECON = FaceConvention(
    "deep3dfacerecon", bf.BFM_FRONT, ("id", "exp", "tex", "angle", "gamma", "trans"), camera_distance=10.0,
    focal=1015.0, center=112.0, init_lit=0.8, gamma_channel_major=True, recenter=True, unit_face_normals=True,
    translate_first=False, mirrored_camera=False, texture_divisor=255.0)
# AudioDVP: gluLookAt eye (0, 0, 8), up (0, -1, 0), gluPerspective fov_y 25 degrees, 256 x 256 screen:
# u = 128 (1 - cot(12.5 deg) x / (8 - z)), v = 128 (1 - cot(12.5 deg) y / (8 - z)).
AUDIODVP = FaceConvention(
    "audiodvp", bf.AUDIODVP_DATA, ("id", "tex", "exp", "gamma", "angle", "trans"), camera_distance=8.0,
    focal=128.0 / math.tan(math.radians(12.5)), center=128.0, init_lit=0.7, gamma_channel_major=False,
    recenter=False, unit_face_normals=False, translate_first=True, mirrored_camera=True, texture_divisor=1.0,
    fov_y=25.0)
CONVENTIONS = {c.name: c for c in (DEEP3DFACERECON, AUDIODVP)}


def get_convention(name: str | FaceConvention) -> FaceConvention:
    """A convention by name (case-insensitive); DataError listing the known ones."""
    if isinstance(name, FaceConvention):
        return name
    try:
        return CONVENTIONS[str(name).lower()]
    except KeyError:
        raise DataError(f"unknown face model convention {name!r}; known: {', '.join(CONVENTIONS)}") from None


def _load_file(folder: Path, convention: FaceConvention, model_file: str | None) -> tuple[Path, dict]:
    """Read the convention's derived file, building it from the raw BFM files first if it is absent (as
    Deep3DFaceRecon does on first use)."""
    path = folder / (model_file or convention.model_file)
    if not path.is_file():
        missing = bf.missing_raw_files(folder)
        if missing:
            raise DataError(f"{path} not found, and it cannot be built: {folder} lacks {', '.join(missing)} "
                            f"(build it with `talkingface face3d build-bfm {folder}`"
                            f"{' --convention audiodvp' if convention is AUDIODVP else ''}; see docs/face3d.md)")
        logger.info("%s not found: building it from the raw files in %s", path.name, folder)
        bf.build_bfm(folder, path, convention.name)
    if convention is AUDIODVP:
        return path, bf.read_audiodvp_data(path)
    return path, bf.read_bfm_front(path)


class ParametricFaceModel:
    """A 3D morphable face model read from ``bfm_folder``, in the named ``convention``.

    ``camera_distance``, ``focal``, ``center``, ``recenter`` and ``init_lit`` (9 values, one per SH band, the
    same for each channel) default to the convention's (Deep3DFaceRecon: 10, 1015, 112, True, [0.8, 0, ...]).
    The derived file (``BFM_model_front.mat`` or ``data.mat``, or ``model_file``) is built from the raw files
    when absent. The bases are kept in float32, as both original codes keep them; every method computes in its
    inputs' dtype on their device. ``is_standin``: the file is the synthetic stand-in, not BFM.
    """

    def __init__(self, bfm_folder: str | Path = "./BFM", camera_distance: float | None = None,
                 focal: float | None = None, center: float | None = None, *,
                 convention: str | FaceConvention = "deep3dfacerecon", recenter: bool | None = None,
                 init_lit=None, model_file: str | None = None):
        conv = self.convention = get_convention(convention)
        folder = Path(bfm_folder)
        self.model_path, data = _load_file(folder, conv, model_file)
        self.is_standin = bf.STANDIN_KEY in data or (folder / bf.STANDIN_FILE).is_file()
        self.camera_distance = conv.camera_distance if camera_distance is None else float(camera_distance)
        self.center = conv.center if center is None else float(center)
        if conv.fov_y is not None:  # gluPerspective: cot(fov / 2) in float32, as tf_mesh_renderer computes it
            fov = torch.tensor([conv.fov_y], dtype=torch.float32)
            ndc = (1.0 / torch.tan(fov * (math.pi / 360.0)) if focal is None
                   else torch.tensor([float(focal) / self.center], dtype=torch.float32))
            self._ndc_focal, focal = ndc, float(ndc) * self.center
        self.focal = conv.focal if focal is None else float(focal)
        self.recenter = conv.recenter if recenter is None else bool(recenter)
        lit = np.zeros(9) if init_lit is None else np.asarray(init_lit, np.float64).reshape(-1)
        if init_lit is None:
            lit[0] = conv.init_lit
        if lit.size != 9:
            raise ValueError(f"init_lit needs 9 values (one per SH band), got {lit.size}")
        self._arrays = self._arrays_of(data, lit)
        self.num_vertices = self._arrays["mean_shape"].shape[1] // 3
        sizes = {"id": self._arrays["id_base"].shape[1], "exp": self._arrays["exp_base"].shape[1],
                 "tex": self._arrays["tex_base"].shape[1], **FIXED_BLOCKS}
        start, self.coeff_slices = 0, {}
        for name in conv.order:
            self.coeff_slices[name] = slice(start, start + sizes[name])
            start += sizes[name]
        self.num_coeffs = start
        self._cache: dict = {}
        logger.info("face model %s (%s convention): %s", self.model_path, conv.name,
                    "SYNTHETIC STAND-IN, not the Basel Face Model" if self.is_standin else "BFM09")

    @property
    def image_size(self) -> int:
        """The square image its camera renders: ``int(2 * center)`` (Deep3DFaceRecon's ``rasterize_size``: 224;
        AudioDVP's 256 x 256 screen)."""
        return int(2 * self.center)

    @classmethod
    def from_convention(cls, name: str, bfm_folder: str | Path = "./BFM", **options) -> "ParametricFaceModel":
        """``ParametricFaceModel(bfm_folder, convention=name, **options)``."""
        return cls(bfm_folder, convention=name, **options)

    def _arrays_of(self, data: dict, lit: np.ndarray) -> dict:
        """torch tensors of the file's arrays, as the original codes prepare them (float32, 0-based int64)."""
        conv = self.convention
        if conv is AUDIODVP:
            arrays = {"mean_shape": data["geo_mean"], "id_base": data["id_base"], "exp_base": data["exp_base"],
                      "mean_tex": data["tex_mean"], "tex_base": data["tex_base"]}
            index = {"face_buf": data["triangles"], "point_buf": data["point_buf"],
                     "keypoints": data["key_points"].reshape(-1)[MIRROR_68]}
            if "mouth_triangles" in data:
                index["mouth_face_buf"] = data["mouth_triangles"]
        else:
            arrays = {"mean_shape": data["meanshape"], "id_base": data["idBase"], "exp_base": data["exBase"],
                      "mean_tex": data["meantex"], "tex_base": data["texBase"]}
            index = {"face_buf": data["tri"].astype(np.int64) - 1, "point_buf": data["point_buf"].astype(np.int64) - 1,
                     "keypoints": np.squeeze(data["keypoints"]).astype(np.int64) - 1}
            if "frontmask2_idx" in data and "tri_mask2" in data:
                index["front_mask"] = np.squeeze(data["frontmask2_idx"]).astype(np.int64) - 1
                index["front_face_buf"] = data["tri_mask2"].astype(np.int64) - 1
            if "skinmask" in data:
                arrays["skin_mask"] = np.squeeze(data["skinmask"])
        arrays = {key: np.asarray(value, np.float32) for key, value in arrays.items()}
        if self.recenter:
            mean = arrays["mean_shape"].reshape(-1, 3)
            arrays["mean_shape"] = mean - np.mean(mean, axis=0, keepdims=True)
        arrays["mean_shape"] = arrays["mean_shape"].reshape(1, -1)
        arrays["mean_tex"] = arrays["mean_tex"].reshape(1, -1)
        # persc_proj of bfm.py: K transposed, so that points (N, 3) @ it = (K p)^T.
        arrays["persc_proj"] = np.array([[self.focal, 0, self.center], [0, self.focal, self.center], [0, 0, 1]],
                                        np.float32).T
        if conv.gamma_channel_major:
            arrays["init_lit"] = lit.astype(np.float32).reshape(1, 1, 9)
        else:
            arrays["init_lit"] = np.repeat(lit.astype(np.float32).reshape(1, 9, 1), 3, axis=2)
        # Keep loadmat's memory layout (column-major), as bfm.py's torch.tensor(array) does: the order of the sums
        # over point_buf, and so the float32 bits of the normals, depend on it.
        tensors = {key: torch.from_numpy(value) for key, value in arrays.items()}
        tensors.update({key: torch.from_numpy(np.asarray(value, np.int64)) for key, value in index.items()})
        if self.convention.fov_y is not None:
            tensors["ndc_focal"] = self._ndc_focal
        return tensors

    def _get(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Stored tensor ``name`` on ``like``'s device (and in its dtype, for floating tensors), cached."""
        tensor = self._arrays[name]
        dtype = like.dtype if tensor.is_floating_point() else tensor.dtype
        key = (name, like.device, dtype)
        if key not in self._cache:
            self._cache[key] = tensor.to(device=like.device, dtype=dtype)
        return self._cache[key]

    def tensor(self, name: str) -> torch.Tensor:
        """A stored array as loaded: ``mean_shape`` (1, 3N), ``id_base``/``exp_base``/``tex_base`` (3N, K),
        ``mean_tex`` (1, 3N), ``face_buf`` (F, 3), ``point_buf`` (N, 8), ``keypoints`` (68,) (0-based), and when
        the file has them ``front_mask``, ``front_face_buf``, ``skin_mask`` (Deep3DFaceRecon) or
        ``mouth_face_buf`` (AudioDVP)."""
        return self._arrays[name]

    def has(self, name: str) -> bool:
        return name in self._arrays

    # ---- coefficients ---------------------------------------------------------------------------------------------
    def split_coeff(self, coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 257) -> {'id', 'exp', 'tex', 'angle', 'gamma', 'trans'}, sliced in the convention's order."""
        if coeffs.ndim != 2 or coeffs.shape[1] != self.num_coeffs:
            raise ValueError(f"{self.convention.name} coefficients must be (B, {self.num_coeffs}), "
                             f"got {tuple(coeffs.shape)}")
        return {name: coeffs[:, part] for name, part in self.coeff_slices.items()}

    def compute_shape(self, id_coeff: torch.Tensor, exp_coeff: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) unposed shape: mean + id_base id + exp_base exp (each code's order of operations)."""
        id_part = self._basis_times(self._get("id_base", id_coeff), id_coeff)
        exp_part = self._basis_times(self._get("exp_base", exp_coeff), exp_coeff)
        mean = self._get("mean_shape", id_coeff)
        shape = mean + id_part + exp_part if self.convention is AUDIODVP else id_part + exp_part + mean
        return shape.reshape(id_coeff.shape[0], -1, 3)

    def _basis_times(self, basis: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
        """(B, 3N): bfm.py's einsum, or AudioDVP's batched matrix-vector product (different float32 rounding)."""
        if self.convention is AUDIODVP:
            return torch.matmul(basis, coeff.unsqueeze(-1)).squeeze(-1)
        return torch.einsum("ij,aj->ai", basis, coeff)

    def compute_texture(self, tex_coeff: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, N, 3) RGB albedo in [0, 1] (``normalize``: Deep3DFaceRecon's file is 0..255 and is divided by 255;
        AudioDVP's is already divided)."""
        tex_part = self._basis_times(self._get("tex_base", tex_coeff), tex_coeff)
        mean = self._get("mean_tex", tex_coeff)
        if self.convention is AUDIODVP:
            texture = mean + tex_part
        else:
            texture = tex_part + mean
            if normalize:
                texture = texture / self.convention.texture_divisor
        return texture.reshape(tex_coeff.shape[0], -1, 3)

    def compute_norm(self, face_shape: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) unit vertex normals: triangle normals ``(v1 - v2) x (v2 - v3)`` (normalised first in
        Deep3DFaceRecon, not in AudioDVP) summed over each vertex's ``point_buf`` triangles (the padding index
        hits an appended zero normal)."""
        face_buf = self._get("face_buf", face_shape)
        v1, v2, v3 = (face_shape[:, face_buf[:, k]] for k in range(3))
        face_norm = torch.cross(v1 - v2, v2 - v3, dim=-1)
        if self.convention.unit_face_normals:
            face_norm = F.normalize(face_norm, dim=-1, p=2)
        face_norm = torch.cat([face_norm, face_norm.new_zeros(face_norm.shape[0], 1, 3)], dim=1)
        vertex_norm = torch.sum(face_norm[:, self._get("point_buf", face_shape)], dim=2)
        return F.normalize(vertex_norm, dim=-1, p=2)

    def compute_rotation(self, angles: torch.Tensor) -> torch.Tensor:
        """(B, 3, 3) ``rot`` with ``points @ rot`` = R points, R = Rz(angles[2]) Ry(angles[1]) Rx(angles[0])
        (radians; rot = R^T). Deep3DFaceRecon multiplies the three matrices, AudioDVP writes the product out
        (tf_mesh_renderer's ``euler_matrices``); the same matrix up to rounding. ``angles`` (B, 3) or (B, 3, 1)."""
        angles = angles.reshape(angles.shape[0], 3)
        if self.convention is AUDIODVP:
            s, c = torch.sin(angles), torch.cos(angles)
            c0, c1, c2, s0, s1, s2 = c[:, 0], c[:, 1], c[:, 2], s[:, 0], s[:, 1], s[:, 2]
            rot = torch.stack([c2 * c1, c2 * s1 * s0 - c0 * s2, s2 * s0 + c2 * c0 * s1,
                               c1 * s2, c2 * c0 + s2 * s1 * s0, c0 * s2 * s1 - c2 * s0,
                               -s1, c1 * s0, c1 * c0], dim=1).reshape(-1, 3, 3)
            return rot.permute(0, 2, 1)
        batch = angles.shape[0]
        ones, zeros = angles.new_ones(batch, 1), angles.new_zeros(batch, 1)
        x, y, z = angles[:, :1], angles[:, 1:2], angles[:, 2:]
        rot_x = torch.cat([ones, zeros, zeros, zeros, torch.cos(x), -torch.sin(x), zeros, torch.sin(x),
                           torch.cos(x)], dim=1).reshape(batch, 3, 3)
        rot_y = torch.cat([torch.cos(y), zeros, torch.sin(y), zeros, ones, zeros, -torch.sin(y), zeros,
                           torch.cos(y)], dim=1).reshape(batch, 3, 3)
        rot_z = torch.cat([torch.cos(z), -torch.sin(z), zeros, torch.sin(z), torch.cos(z), zeros, zeros, zeros,
                           ones], dim=1).reshape(batch, 3, 3)
        return (rot_z @ rot_y @ rot_x).permute(0, 2, 1)

    def transform(self, face_shape: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) posed shape: ``face_shape @ rot + trans`` (Deep3DFaceRecon) or ``(face_shape - trans) @ rot``
        (AudioDVP: the translation is undone before the rotation). ``trans`` (B, 3) or (B, 3, 1)."""
        trans = trans.reshape(trans.shape[0], 1, 3)
        if self.convention.translate_first:
            return (face_shape - trans) @ rot
        return face_shape @ rot + trans

    def to_camera(self, face_shape: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) camera coordinates whose pinhole projection is ``to_image``: z = camera_distance - z, and for
        AudioDVP's up-is-minus-y camera also x, y negated. Returns a new tensor (bfm.py writes in place)."""
        x, y, z = face_shape.unbind(-1)
        if self.convention.mirrored_camera:
            x, y = -x, -y
        return torch.stack([x, y, self.camera_distance - z], dim=-1)

    def to_image(self, face_shape: torch.Tensor) -> torch.Tensor:
        """(B, N, 2) pixel coordinates ``u = focal x / z + center``, ``v = focal y / z + center`` of camera-space
        points, computed as bfm.py does (``p @ K^T``, then divided by the third coordinate), or for AudioDVP as
        its clip space does (``(cot(fov / 2) x / z + 1) center``). Deep3DFaceRecon's v grows upwards (image row =
        H - 1 - v); AudioDVP's v is the image row."""
        if self.convention.fov_y is not None:
            ndc = self._get("ndc_focal", face_shape) * face_shape[..., :2] / face_shape[..., 2:]
            return (ndc + 1) * self.center
        proj = face_shape @ self._get("persc_proj", face_shape)
        return proj[..., :2] / proj[..., 2:]

    def get_landmarks(self, face_proj: torch.Tensor) -> torch.Tensor:
        """(B, 68, 2): the keypoint vertices of projected points (B, N, 2)."""
        return face_proj[:, self._get("keypoints", face_proj)]

    def compute_color(self, face_texture: torch.Tensor, face_norm: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) colour = albedo * SH irradiance: Y (B, N, 9) the 9 SH basis functions of the (rotated) normal
        times the a_n c_n constants, times gamma (B, 27) read per channel (Deep3DFaceRecon: (3, 9), AudioDVP:
        (9, 3)) plus ``init_lit`` on the ambient band."""
        batch = gamma.shape[0]
        a, c = SH_A, SH_C
        nx, ny, nz = face_norm[..., :1], face_norm[..., 1:2], face_norm[..., 2:]
        if self.convention.gamma_channel_major:
            y0 = a[0] * c[0] * torch.ones_like(nx)
        else:  # AudioDVP: ones * a0 * c0, rounded twice
            y0 = torch.ones_like(nx) * a[0] * c[0]
        basis = torch.cat([y0, -a[1] * c[1] * ny, a[1] * c[1] * nz, -a[1] * c[1] * nx,
                           a[2] * c[2] * nx * ny, -a[2] * c[2] * ny * nz,
                           0.5 * a[2] * c[2] / math.sqrt(3.0) * (3 * nz ** 2 - 1), -a[2] * c[2] * nx * nz,
                           0.5 * a[2] * c[2] * (nx ** 2 - ny ** 2)], dim=-1)
        lit = self._get("init_lit", gamma)
        if self.convention.gamma_channel_major:
            gamma = (gamma.reshape(batch, 3, 9) + lit).permute(0, 2, 1)
            light = torch.cat([basis @ gamma[..., k:k + 1] for k in range(3)], dim=-1)
        else:
            light = basis @ (gamma.reshape(batch, 9, 3) + lit)
        return light * face_texture

    # ---- everything -----------------------------------------------------------------------------------------------
    def compute_for_render(self, coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 257) coefficients -> (vertices (B, N, 3) in camera space, texture (B, N, 3) albedo in [0, 1],
        colour (B, N, 3) lit albedo, landmarks (B, 68, 2) in pixels), as bfm.py's ``compute_for_render``; normals
        come from the unposed shape and are rotated with it."""
        coef = self.split_coeff(coeffs)
        face_shape = self.compute_shape(coef["id"], coef["exp"])
        rotation = self.compute_rotation(coef["angle"])
        face_vertex = self.to_camera(self.transform(face_shape, rotation, coef["trans"]))
        landmark = self.get_landmarks(self.to_image(face_vertex))
        face_texture = self.compute_texture(coef["tex"])
        face_norm_roted = self.compute_norm(face_shape) @ rotation
        face_color = self.compute_color(face_texture, face_norm_roted, coef["gamma"])
        return face_vertex, face_texture, face_color, landmark

    def to(self, device: torch.device | str) -> "ParametricFaceModel":
        """Move the stored tensors to ``device`` (methods follow their inputs anyway; this saves the copies)."""
        self._arrays = {key: value.to(device) for key, value in self._arrays.items()}
        self._cache = {}
        return self
