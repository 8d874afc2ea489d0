"""The 3D morphable model files users download (BFM09, Guo et al.'s expression basis, Deep3DFaceRecon's index
files): readers that name the file and what is wrong, and the two derived files built from them.

- ``BFM_model_front.mat``: what Deep3DFaceRecon's ``util/load_mats.py: transferBFM09`` writes (same keys, dtypes,
  shapes and values), used by VideoReTalking and GSmoothFace (``transfer_bfm09``).
- ``data.mat``: what AudioDVP's ``renderer/build_data.py`` writes (``audiodvp_data``).

Formulas, the files' layouts and what differs between the two: docs/face3d.md, "Face model files and the
stand-in". The synthetic files that replace BFM in tests and the demo (``standin.py``) carry a marker key
``STANDIN_KEY`` in every .mat file and a ``STANDIN.txt`` in their folder; ``is_standin`` looks for both.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from ..errors import DataError
from ..io_utils import atomic_path

logger = logging.getLogger(__name__)

MORPHABLE_MODEL = "01_MorphableModel.mat"
EXP_PCA = "Exp_Pca.bin"
STD_EXP = "std_exp.txt"
FRONT_INDEX = "BFM_front_idx.mat"
EXP_INDEX = "BFM_exp_idx.mat"
FACEMODEL_INFO = "facemodel_info.mat"
LANDMARKS_3D = "similarity_Lm3D_all.mat"
BFM_FRONT = "BFM_model_front.mat"
AUDIODVP_DATA = "data.mat"

# Where each raw file comes from (error messages and docs/face3d.md).
SOURCES = {
    MORPHABLE_MODEL: "Basel Face Model 2009 (faces.dmi.unibas.ch, registration required)",
    EXP_PCA: "Guo et al.'s CoarseData (github.com/Juyong/3DFace)",
    STD_EXP: "the BFM/ folder of microsoft/Deep3DFaceReconstruction or sicxu/Deep3DFaceRecon_pytorch",
    FRONT_INDEX: "the BFM/ folder of microsoft/Deep3DFaceReconstruction or sicxu/Deep3DFaceRecon_pytorch",
    EXP_INDEX: "the BFM/ folder of microsoft/Deep3DFaceReconstruction or sicxu/Deep3DFaceRecon_pytorch",
    FACEMODEL_INFO: "the BFM/ folder of microsoft/Deep3DFaceReconstruction or sicxu/Deep3DFaceRecon_pytorch",
    LANDMARKS_3D: "the BFM/ folder of microsoft/Deep3DFaceReconstruction or sicxu/Deep3DFaceRecon_pytorch",
}
RAW_FILES = (MORPHABLE_MODEL, EXP_PCA, STD_EXP, FRONT_INDEX, EXP_INDEX, FACEMODEL_INFO)

STANDIN_FILE = "STANDIN.txt"
STANDIN_KEY = "talkingface_standin"

DEEP3D_SCALE = 1e5  # BFM09 micrometres -> decimetres (transferBFM09)
AUDIODVP_SCALE = 92156.7  # AudioDVP's build_data.py divides geometry by this instead
ID_DIM, EXP_DIM, TEX_DIM = 80, 64, 80  # components kept by both builders
LANDMARKS = 68
POINT_BUF_WIDTH = 8
INFO_KEYS = ("tri", "point_buf", "tri_mask2", "keypoints", "frontmask2_idx", "skinmask")
BFM_FRONT_KEYS = ("meanshape", "meantex", "idBase", "exBase", "texBase") + INFO_KEYS
AUDIODVP_KEYS = ("triangles", "key_points", "point_buf", "mouth_triangles", "geo_mean", "tex_mean", "id_base",
                 "exp_base", "tex_base")


@dataclass(frozen=True)
class Bfm09Sources:
    """The raw files of a BFM folder, read and cross-checked (arrays as stored, 1-based indices).

    ``exp_pc`` (3 N_exp, K_exp) float32 (Exp_Pca.bin's components, transposed); ``exp_std`` (K_exp,) float64;
    ``front_idx`` and ``trim_index`` as stored in their .mat files; ``info``: facemodel_info.mat's arrays.
    """

    folder: Path
    model: dict
    exp_pc: np.ndarray
    exp_std: np.ndarray
    front_idx: np.ndarray
    trim_index: np.ndarray
    info: dict
    standin: bool


# ---- low-level readers --------------------------------------------------------------------------------------------
def _require_file(path: Path) -> Path:
    if not path.is_file():
        source = SOURCES.get(path.name)
        where = f" (from {source})" if source else ""
        raise DataError(f"{path}: file not found{where}; see docs/face3d.md")
    return path


def _loadmat(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """The variables ``keys`` (required) and ``optional`` of a MATLAB v5 file; DataError naming the file."""
    _require_file(path)
    try:
        data = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError, NotImplementedError (v7.3)...
        raise DataError(f"{path}: cannot read as a MATLAB .mat file ({type(exc).__name__}: {exc})") from None
    missing = [key for key in keys if key not in data]
    if missing:
        found = sorted(key for key in data if not key.startswith("__"))
        raise DataError(f"{path}: variable(s) {', '.join(missing)} missing (found: {', '.join(found) or 'none'})")
    return {key: data[key] for key in keys + optional if key in data}


def _check_numeric(path: Path, key: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "fiub" or array.size == 0:
        raise DataError(f"{path}: {key} must be a non-empty numeric array, got {array.dtype} {array.shape}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise DataError(f"{path}: {key} contains NaN or infinite values")
    return array


def _check_shape(path: Path, key: str, array: np.ndarray, shape: tuple) -> np.ndarray:
    """``shape`` entries that are None match any size."""
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise DataError(f"{path}: {key} has shape {array.shape}, expected {want}")
    return array


def _check_index(path: Path, key: str, array: np.ndarray, upper: int, lower: int = 1) -> np.ndarray:
    """1-based index values: integers in [lower, upper]."""
    _check_numeric(path, key, array)
    values = np.asarray(array, np.float64)
    if np.any(values != np.round(values)):
        raise DataError(f"{path}: {key} must hold whole numbers (1-based indices)")
    if values.min() < lower or values.max() > upper:
        raise DataError(f"{path}: {key} values span {values.min():.0f}..{values.max():.0f}, expected "
                        f"{lower}..{upper}")
    return array


def read_morphable_model(path: str | Path) -> dict:
    """BFM09's ``01_MorphableModel.mat``: ``shapeMU`` (3V, 1), ``shapePC`` (3V, K), ``shapeEV`` (K, 1) and the
    same for ``tex``; arrays as stored (float32 in the stand-in)."""
    path = Path(path)
    keys = ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV")
    data = _loadmat(path, keys, optional=(STANDIN_KEY,))
    for key in keys:
        _check_numeric(path, key, data[key])
    for part, dim in (("shape", ID_DIM), ("tex", TEX_DIM)):
        mu, pc, ev = data[part + "MU"], data[part + "PC"], data[part + "EV"]
        _check_shape(path, part + "PC", pc, (None, None))
        rows, count = pc.shape
        if rows % 3 or mu.size != rows:
            raise DataError(f"{path}: {part}PC has {rows} rows and {part}MU {mu.size} values; both must be 3 x "
                            "the vertex count")
        if ev.size != count or count < dim:
            raise DataError(f"{path}: {part}EV has {ev.size} values for {count} components of {part}PC "
                            f"(at least {dim} needed)")
    if data["texPC"].shape[0] != data["shapePC"].shape[0]:
        raise DataError(f"{path}: texPC has {data['texPC'].shape[0]} rows, shapePC {data['shapePC'].shape[0]}")
    return data


def read_exp_pca(path: str | Path, vertices: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Guo et al.'s ``Exp_Pca.bin``: int32 K, float32 mean (3 ``vertices``), float32 components (K rows of
    3 ``vertices``), little-endian. Returns (mean (3V,) float32, components (3V, K) float32, transposed as both
    original builders use them). ``vertices`` None: derived from the file size (53215 for the real file, which
    the original code hard-codes; trailing bytes beyond what it reads are ignored, as there)."""
    path = Path(_require_file(Path(path)))
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = np.fromfile(handle, dtype="<i4", count=1)
        if head.size != 1 or not 1 <= int(head[0]) <= 10_000:
            raise DataError(f"{path}: does not start with a plausible int32 component count "
                            f"({'empty file' if head.size == 0 else int(head[0])})")
        count = int(head[0])
        if vertices is None:
            body, rest = divmod(size - 4, 4 * 3 * (count + 1))
            if rest or body == 0:
                raise DataError(f"{path}: {size} bytes is not 4 + 12 x vertices x ({count} + 1) for any vertex count")
            vertices = body
        needed = 4 + 4 * 3 * vertices * (count + 1)
        if size < needed:
            raise DataError(f"{path}: {size} bytes, but {count} components of {vertices} vertices need {needed}")
        mean = np.fromfile(handle, dtype="<f4", count=3 * vertices)
        components = np.fromfile(handle, dtype="<f4", count=3 * vertices * count)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(components))):
        raise DataError(f"{path}: contains NaN or infinite values")
    return mean.astype(np.float32), components.reshape(count, -1).T.astype(np.float32)


def read_std_exp(path: str | Path, count: int | None = None) -> np.ndarray:
    """``std_exp.txt``: the expression components' standard deviations, (K,) float64 (``np.loadtxt``)."""
    path = Path(_require_file(Path(path)))
    try:
        values = np.loadtxt(path, dtype=np.float64).reshape(-1)
    except ValueError as exc:
        raise DataError(f"{path}: cannot read numbers ({exc})") from None
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise DataError(f"{path}: needs finite numbers, got {values.size} values")
    if count is not None and values.size != count:
        raise DataError(f"{path}: {values.size} values for {count} expression components (Exp_Pca.bin)")
    return values


def read_index(path: str | Path, key: str, upper: int | None = None) -> np.ndarray:
    """A 1-based vertex index file (``BFM_front_idx.mat['idx']``, ``BFM_exp_idx.mat['trimIndex']``), as stored
    ((n, 1); float32 and uint16 in the real files); values checked against ``upper``."""
    path = Path(path)
    values = _loadmat(path, (key,))[key]
    _check_shape(path, key, values, (None, 1) if values.ndim == 2 and values.shape[1] == 1 else (1, None))
    return _check_index(path, key, values, upper if upper is not None else np.iinfo(np.int32).max)


def read_facemodel_info(path: str | Path, vertices: int | None = None) -> dict:
    """``facemodel_info.mat``: ``tri`` (F, 3), ``point_buf`` (N, 8) padded with F + 1, ``keypoints`` (1, 68),
    ``frontmask2_idx`` (n, 1), ``tri_mask2`` (f, 3) indexing ``frontmask2_idx``, ``skinmask`` (1, N); all
    1-based, arrays as stored (float32 in the real file). ``vertices``: the front vertex count to check against."""
    path = Path(path)
    info = _loadmat(path, INFO_KEYS, optional=("frontmask2", STANDIN_KEY))
    point_buf = _check_shape(path, "point_buf", _check_numeric(path, "point_buf", info["point_buf"]),
                             (vertices, POINT_BUF_WIDTH))
    count = point_buf.shape[0]
    tri = _check_index(path, "tri", _check_shape(path, "tri", info["tri"], (None, 3)), count)
    _check_index(path, "point_buf", point_buf, tri.shape[0] + 1)
    keypoints = _check_index(path, "keypoints", info["keypoints"], count)
    if keypoints.size != LANDMARKS:
        raise DataError(f"{path}: keypoints has {keypoints.size} values, expected {LANDMARKS}")
    front = _check_index(path, "frontmask2_idx", info["frontmask2_idx"], count)
    _check_index(path, "tri_mask2", _check_shape(path, "tri_mask2", info["tri_mask2"], (None, 3)), front.size)
    if info["skinmask"].size != count:
        raise DataError(f"{path}: skinmask has {info['skinmask'].size} values for {count} vertices")
    _check_numeric(path, "skinmask", info["skinmask"])
    return info


def read_lm3d(path: str | Path) -> np.ndarray:
    """``similarity_Lm3D_all.mat['lm']``: the mean face's 68 landmarks in 3D, (68, 3) as stored."""
    path = Path(path)
    lm = _loadmat(path, ("lm",))["lm"]
    return _check_shape(path, "lm", _check_numeric(path, "lm", lm), (LANDMARKS, 3))


def load_lm3d(bfm_folder: str | Path) -> np.ndarray:
    """The 5 reference points Deep3DFaceRecon's ``align_img`` fits to (``util/load_mats.py: load_lm3d``): from
    the 68, the two eye centres (means of 36/39 and 42/45), the nose tip (30), the mouth corners (48, 54), in the
    order eye, eye, nose, mouth, mouth. (5, 3), the stored dtype."""
    lm = read_lm3d(Path(bfm_folder) / LANDMARKS_3D)
    return np.stack([lm[36:40:3].mean(0), lm[42:46:3].mean(0), lm[30], lm[48], lm[54]])


# ---- the raw folder -----------------------------------------------------------------------------------------------
def missing_raw_files(bfm_folder: str | Path) -> list[str]:
    """The raw files ``build_bfm`` needs that ``bfm_folder`` lacks."""
    return [name for name in RAW_FILES if not (Path(bfm_folder) / name).is_file()]


def read_bfm09_sources(bfm_folder: str | Path) -> Bfm09Sources:
    """Read and cross-check the six raw files of a BFM folder; DataError listing every missing file, or naming
    the malformed one."""
    folder = Path(bfm_folder)
    if not folder.is_dir():
        raise DataError(f"BFM folder {folder} does not exist")
    missing = missing_raw_files(folder)
    if missing:
        listed = "; ".join(f"{name} (from {SOURCES[name]})" for name in missing)
        raise DataError(f"BFM folder {folder} lacks {listed}; see docs/face3d.md")
    model = read_morphable_model(folder / MORPHABLE_MODEL)
    shape_vertices = model["shapePC"].shape[0] // 3
    trim_index = read_index(folder / EXP_INDEX, "trimIndex", upper=shape_vertices)
    exp_vertices = trim_index.size  # one entry per vertex of the expression model (53215; hard-coded upstream)
    _, exp_pc = read_exp_pca(folder / EXP_PCA, vertices=exp_vertices)
    if exp_pc.shape[1] < EXP_DIM:
        raise DataError(f"{folder / EXP_PCA}: {exp_pc.shape[1]} expression components, at least {EXP_DIM} needed")
    exp_std = read_std_exp(folder / STD_EXP, count=exp_pc.shape[1])
    front_idx = read_index(folder / FRONT_INDEX, "idx", upper=exp_vertices)
    info = read_facemodel_info(folder / FACEMODEL_INFO, vertices=front_idx.size)
    return Bfm09Sources(folder, model, exp_pc, exp_std, front_idx, trim_index, info, STANDIN_KEY in model)


def _vertex_maps(sources: Bfm09Sources) -> tuple[np.ndarray, np.ndarray]:
    """0-based (expression-model, shape-model) vertex of each front vertex: ``idx - 1`` and
    ``trimIndex[idx - 1] - 1`` (the int32 casts of transferBFM09)."""
    index_exp = sources.front_idx.astype(np.int32).reshape(-1) - 1
    index_shape = (sources.trim_index.astype(np.int32).reshape(-1) - 1)[index_exp]
    return index_exp, index_shape


def _front_rows(basis: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Rows x, y, z of ``vertices`` of an interleaved (3V, K) basis: (3 len(vertices), K)."""
    return basis.reshape(-1, 3, basis.shape[-1])[vertices].reshape(-1, basis.shape[-1])


# ---- Deep3DFaceRecon: BFM_model_front.mat ------------------------------------------------------------------------
def transfer_bfm09_arrays(sources: Bfm09Sources) -> dict:
    """The ``BFM_model_front.mat`` variables, computed as ``transferBFM09`` does (same numpy operations in the
    same order, so the same dtypes and bits): bases times their eigenvalues (std for expressions), identity and
    expression divided by 1e5, first 80 / 64 / 80 columns, rows of the front vertices; the facemodel_info
    arrays copied unchanged. A stand-in source adds ``STANDIN_KEY``."""
    model = sources.model
    index_exp, index_shape = _vertex_maps(sources)
    # Column slicing before the elementwise products gives the same values as slicing after (transferBFM09).
    id_base = model["shapePC"][:, :ID_DIM] * np.reshape(model["shapeEV"], [1, -1])[:, :ID_DIM] / DEEP3D_SCALE
    ex_base = sources.exp_pc[:, :EXP_DIM] * np.reshape(sources.exp_std, [1, -1])[:, :EXP_DIM] / DEEP3D_SCALE
    tex_base = model["texPC"][:, :TEX_DIM] * np.reshape(model["texEV"], [1, -1])[:, :TEX_DIM]
    arrays = {
        "meanshape": (np.reshape(model["shapeMU"], [-1, 3]) / DEEP3D_SCALE)[index_shape].reshape(1, -1),
        "meantex": np.reshape(model["texMU"], [-1, 3])[index_shape].reshape(1, -1),
        "idBase": _front_rows(id_base, index_shape),
        "exBase": _front_rows(ex_base, index_exp),
        "texBase": _front_rows(tex_base, index_shape),
    }
    arrays.update({key: sources.info[key] for key in INFO_KEYS})
    if sources.standin:
        arrays[STANDIN_KEY] = model[STANDIN_KEY]
    return arrays


def transfer_bfm09(bfm_folder: str | Path) -> dict:
    """``BFM_model_front.mat``'s variables built from the raw files of ``bfm_folder`` (in memory)."""
    return transfer_bfm09_arrays(read_bfm09_sources(bfm_folder))


# ---- AudioDVP: data.mat -------------------------------------------------------------------------------------------
def lower_face_triangles(geo_mean: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """AudioDVP's ``mouth_triangles``: the triangles (in order) with a vertex below the mean shape's centroid (y < 0
    after centring; the division by the maximum that build_data.py also applies does not change a sign)."""
    geo = geo_mean.copy().reshape(-1, 3)
    geo = geo - geo.mean(axis=0, keepdims=True)
    geo = geo / geo.max()
    lower = geo[:, 1] < 0.0
    return triangles[lower[triangles].any(axis=1)]


def audiodvp_data_arrays(sources: Bfm09Sources) -> dict:
    """The ``data.mat`` variables of AudioDVP's ``renderer/build_data.py`` (same numpy operations and order):
    0-based int32 ``triangles``, int64 ``key_points`` (68,) and ``point_buf``; first 80 / 64 / 80 components
    times their eigenvalues (std), front rows; geometry divided by 92156.7 (the expression basis after a float32
    cast), texture by 255; means as (3N, 1); ``mouth_triangles`` (``lower_face_triangles``)."""
    model, info = sources.model, sources.info
    index_exp, index_shape = _vertex_maps(sources)
    triangles = info["tri"].astype(np.int32) - 1
    id_base = model["shapePC"][:, :ID_DIM] * np.reshape(model["shapeEV"], [1, -1])[:, :ID_DIM]
    exp_base = sources.exp_pc[:, :EXP_DIM] * np.reshape(sources.exp_std, [1, -1])[:, :EXP_DIM]
    tex_base = model["texPC"][:, :TEX_DIM] * np.reshape(model["texEV"], [1, -1])[:, :TEX_DIM]
    geo_mean = np.reshape(model["shapeMU"], [-1, 3])[index_shape].reshape(-1, 1) / AUDIODVP_SCALE
    arrays = {
        "triangles": triangles,
        "key_points": info["keypoints"].reshape(-1).astype(np.int64) - 1,
        "point_buf": (info["point_buf"].astype(np.int32) - 1).astype(np.int64),
        "mouth_triangles": lower_face_triangles(geo_mean, triangles),
        "geo_mean": geo_mean,
        "tex_mean": np.reshape(model["texMU"], [-1, 3])[index_shape].reshape(-1, 1) / 255.0,
        "id_base": _front_rows(id_base, index_shape) / AUDIODVP_SCALE,
        "exp_base": _front_rows(exp_base, index_exp).astype(np.float32) / AUDIODVP_SCALE,
        "tex_base": _front_rows(tex_base, index_shape) / 255.0,
    }
    if sources.standin:
        arrays[STANDIN_KEY] = model[STANDIN_KEY]
    return arrays


def audiodvp_data(bfm_folder: str | Path) -> dict:
    """``data.mat``'s variables built from the raw files of ``bfm_folder`` (in memory)."""
    return audiodvp_data_arrays(read_bfm09_sources(bfm_folder))


# ---- building and reading the derived files -----------------------------------------------------------------------
DERIVED = {"deep3dfacerecon": (BFM_FRONT, transfer_bfm09_arrays), "audiodvp": (AUDIODVP_DATA, audiodvp_data_arrays)}


def write_mat(path: str | Path, arrays: dict) -> Path:
    """``scipy.io.savemat`` (MATLAB v5, as both original builders write) through a temporary file that replaces
    ``path`` only when complete."""
    with atomic_path(path, suffix=".mat") as tmp:
        scipy.io.savemat(str(tmp), arrays)
    return Path(path)


def derived_file_name(convention: str) -> str:
    """``BFM_model_front.mat`` or ``data.mat``; DataError for an unknown convention."""
    if convention not in DERIVED:
        raise DataError(f"unknown face model convention {convention!r}; known: {', '.join(DERIVED)}")
    return DERIVED[convention][0]


def build_bfm(bfm_folder: str | Path, out: str | Path | None = None, convention: str = "deep3dfacerecon") -> Path:
    """Build ``BFM_model_front.mat`` (convention ``deep3dfacerecon``) or AudioDVP's ``data.mat`` (``audiodvp``)
    from the raw files of ``bfm_folder``, written atomically to ``out`` (default: inside the folder)."""
    name = derived_file_name(convention)
    sources = read_bfm09_sources(bfm_folder)
    out = Path(out) if out is not None else Path(bfm_folder) / name
    write_mat(out, DERIVED[convention][1](sources))
    kind = "synthetic stand-in (not BFM)" if sources.standin else "BFM09"
    logger.info("wrote %s from %s: %s", out, bfm_folder, kind)
    return out


def _read_derived(path: Path, keys: tuple[str, ...], optional: tuple[str, ...]) -> dict:
    data = _loadmat(path, keys, optional=optional + (STANDIN_KEY,))
    for key in keys + optional:
        if key in data:
            _check_numeric(path, key, data[key])
    return data


def _check_bases(path: Path, data: dict, mean: str, bases: tuple[str, ...], tex_mean: str) -> int:
    """Vertex count N of a derived file whose ``mean`` has 3N values and whose ``bases`` have 3N rows."""
    rows = data[mean].size
    if rows % 3:
        raise DataError(f"{path}: {mean} has {rows} values, not 3 x the vertex count")
    for key in bases:
        _check_shape(path, key, data[key], (rows, None))
    if data[tex_mean].size != rows:
        raise DataError(f"{path}: {tex_mean} has {data[tex_mean].size} values, {mean} {rows}")
    return rows // 3


def read_bfm_front(path: str | Path) -> dict:
    """``BFM_model_front.mat`` (Deep3DFaceRecon), checked: ``meanshape``/``meantex`` 3N values, ``idBase``,
    ``exBase``, ``texBase`` (3N, K), ``tri`` (F, 3), ``point_buf`` (N, 8), ``keypoints`` 68 values, 1-based;
    ``tri_mask2``, ``frontmask2_idx``, ``skinmask`` when present."""
    path = Path(path)
    data = _read_derived(path, ("meanshape", "meantex", "idBase", "exBase", "texBase", "tri", "point_buf", "keypoints"),
                         ("tri_mask2", "frontmask2_idx", "skinmask"))
    count = _check_bases(path, data, "meanshape", ("idBase", "exBase", "texBase"), "meantex")
    tri = _check_index(path, "tri", _check_shape(path, "tri", data["tri"], (None, 3)), count)
    _check_index(path, "point_buf", _check_shape(path, "point_buf", data["point_buf"], (count, POINT_BUF_WIDTH)),
                 tri.shape[0] + 1)
    _check_index(path, "keypoints", data["keypoints"], count)
    if data["keypoints"].size != LANDMARKS:
        raise DataError(f"{path}: keypoints has {data['keypoints'].size} values, expected {LANDMARKS}")
    return data


def read_audiodvp_data(path: str | Path) -> dict:
    """AudioDVP's ``data.mat``, checked: ``geo_mean``/``tex_mean`` (3N, 1), ``id_base``, ``exp_base``,
    ``tex_base`` (3N, K), ``triangles`` (F, 3), ``point_buf`` (N, 8) padded with F, ``key_points`` 68 values; all
    0-based. ``mouth_triangles`` when present."""
    path = Path(path)
    data = _read_derived(path, ("triangles", "key_points", "point_buf", "geo_mean", "tex_mean", "id_base",
                                "exp_base", "tex_base"), ("mouth_triangles",))
    count = _check_bases(path, data, "geo_mean", ("id_base", "exp_base", "tex_base"), "tex_mean")
    tri = _check_index(path, "triangles", _check_shape(path, "triangles", data["triangles"], (None, 3)),
                       count - 1, lower=0)
    _check_index(path, "point_buf", _check_shape(path, "point_buf", data["point_buf"], (count, POINT_BUF_WIDTH)),
                 tri.shape[0], lower=0)
    _check_index(path, "key_points", data["key_points"], count - 1, lower=0)
    if data["key_points"].size != LANDMARKS:
        raise DataError(f"{path}: key_points has {data['key_points'].size} values, expected {LANDMARKS}")
    if "mouth_triangles" in data:
        _check_index(path, "mouth_triangles", data["mouth_triangles"], count - 1, lower=0)
    return data


def _has_marker(path: Path) -> bool:
    try:
        return any(name == STANDIN_KEY for name, _, _ in scipy.io.whosmat(str(path)))
    except Exception:  # an unreadable file is reported by the readers, not here
        return False


def is_standin(path: str | Path) -> bool:
    """Whether ``path`` (a BFM folder, or one .mat file) is the synthetic stand-in: a ``STANDIN.txt`` in the
    folder, or the ``STANDIN_KEY`` variable in the file (or in the folder's derived or raw model files). Reads
    only the files' variable lists."""
    path = Path(path)
    if path.is_dir():
        if (path / STANDIN_FILE).is_file():
            return True
        return any(_has_marker(path / name) for name in (BFM_FRONT, AUDIODVP_DATA, MORPHABLE_MODEL)
                   if (path / name).is_file())
    return path.is_file() and _has_marker(path)
