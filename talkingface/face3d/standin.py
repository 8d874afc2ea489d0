"""A synthetic stand-in for the Basel Face Model files, which cannot ship: the same files, keys, shapes, dtypes and
index conventions as the real ones (BFM09 + Exp_Pca.bin + Deep3DFaceRecon's index files), for tests and the demo.

The face (in decimetres, x to the subject's left, y up, z towards the camera) is a curved surface with a nose,
eye sockets and lips, meshed as rings around a mouth slit (a hole, as in BFM's front face) out to an elliptical
outline; any vertex count and (within the ring layout's limits) any triangle count, by default 35,709 / 70,789's
proportions. Bases are smooth random fields with orthonormal components (as BFM's); expression component 0 opens
the jaw for a negative coefficient (AudioDVP's ``MouthMask`` sets it to -8 for its "open" mask). Every file says
it is synthetic (``bfm_files.STANDIN_KEY``, ``STANDIN.txt``). Details: docs/face3d.md, "Face model files and the
stand-in".
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io_utils import atomic_path, atomic_write_text
from . import bfm_files as bf

logger = logging.getLogger(__name__)

BFM_FRONT_VERTICES, BFM_FRONT_TRIANGLES = 35_709, 70_789
BFM_EXP_VERTICES, BFM_VERTICES = 53_215, 53_490
SHAPE_COMPONENTS, EXP_COMPONENTS = 199, 79  # BFM09's and Exp_Pca.bin's component counts
DEFAULT_VERTICES = 1000
MIN_VERTICES = 300

JAW_COMPONENT = 0  # expression coefficient that opens the jaw ...
JAW_OPEN_SIGN = -1.0  # ... when negative
JAW_DROP = 0.03  # decimetres the lower lip's centre moves down per unit of -coefficient (the chin: 1.5x that)

MARKER = ("synthetic stand-in written by talkingface.face3d.standin: NOT the Basel Face Model; "
          "see STANDIN.txt and docs/face3d.md")

# Geometry, in decimetres (BFM09 micrometres / 1e5), in the design frame: the mouth slit and the outline ellipse.
MOUTH_CENTRE, MOUTH_HALF_WIDTH, MOUTH_HALF_HEIGHT = np.array([0.0, -0.36]), 0.21, 0.012
OUTLINE_CENTRE, OUTLINE_HALF_WIDTH, OUTLINE_HALF_HEIGHT = np.array([0.0, 0.02]), 0.80, 0.92
CHIN_Y = -0.82
RAW_OFFSET = np.array([0.0, 0.1, 0.3])  # the raw files' origin is not the face centre (BFM's is not either)

# The 68 landmark targets (x, y), iBUG order, image-left (the subject's right, -x) first.
_JAW = [(0.73 * np.cos(t), 0.2 + 1.02 * np.sin(t)) for t in np.pi + np.pi * np.arange(17) / 16]
_BROW = [(-0.57, 0.43), (-0.49, 0.50), (-0.38, 0.52), (-0.28, 0.51), (-0.19, 0.49)]
_NOSE = [(0.0, 0.30), (0.0, 0.18), (0.0, 0.06), (0.0, -0.05),
         (-0.12, -0.14), (-0.07, -0.15), (0.0, -0.16), (0.07, -0.15), (0.12, -0.14)]
_EYE = [(-0.43, 0.29), (-0.37, 0.33), (-0.28, 0.33), (-0.19, 0.29), (-0.27, 0.267), (-0.36, 0.262)]
_EYE_LEFT = [(-x, y) for x, y in (_EYE[3], _EYE[2], _EYE[1], _EYE[0], _EYE[5], _EYE[4])]
_LIPS = [(-0.25, -0.38), (-0.16, -0.32), (-0.06, -0.285), (0.0, -0.295), (0.06, -0.285), (0.16, -0.32),
         (0.25, -0.38), (0.16, -0.42), (0.08, -0.445), (0.0, -0.45), (-0.08, -0.445), (-0.16, -0.42)]
LANDMARK_TARGETS = np.array(_JAW + _BROW + [(-x, y) for x, y in reversed(_BROW)] + _NOSE + _EYE + _EYE_LEFT + _LIPS,
                            dtype=np.float64)
# Inner lips 60-67 lie on the mouth slit: (landmark, slit angle); 60/64 the corners, 61-63 upper, 65-67 lower.
_INNER_LIPS = [(60, np.pi), (61, 0.62 * np.pi), (62, 0.5 * np.pi), (63, 0.38 * np.pi), (64, 0.0),
               (65, 1.62 * np.pi), (66, 1.5 * np.pi), (67, 1.38 * np.pi)]


@dataclass(frozen=True)
class StandinMesh:
    """The stand-in's front face: ``vertices`` (N, 3) float64 decimetres in the design frame (before
    ``RAW_OFFSET``; the face model recentres them), ``faces`` (F, 3) int64 0-based, counter-clockwise seen from
    +z (so ``cross(v1 - v2, v2 - v3)`` points to the camera), ``keypoints`` (68,) int64, ``ring`` (N,) int64 the
    vertex's ring (0: the mouth slit's rim)."""

    vertices: np.ndarray
    faces: np.ndarray
    keypoints: np.ndarray
    ring: np.ndarray


# ---- geometry -----------------------------------------------------------------------------------------------------
def _ellipse_perimeter(a, b):
    h = ((a - b) / (a + b)) ** 2
    return np.pi * (a + b) * (1 + 3 * h / (10 + np.sqrt(4 - 3 * h)))  # Ramanujan's second approximation


def _ring_shape(w):
    """Centre (x, y) and half-axes of ring ``w`` in [0, 1] (0: the mouth slit, 1: the outline); the centre moves
    as w^2 so that the rings stay nested."""
    w = np.asarray(w, np.float64)
    centre = MOUTH_CENTRE + (OUTLINE_CENTRE - MOUTH_CENTRE) * (w**2)[..., None]
    return (centre, MOUTH_HALF_WIDTH + (OUTLINE_HALF_WIDTH - MOUTH_HALF_WIDTH) * w,
            MOUTH_HALF_HEIGHT + (OUTLINE_HALF_HEIGHT - MOUTH_HALF_HEIGHT) * w)


def _ring_counts(vertices: int, boundary: int) -> np.ndarray:
    """Vertices per ring: ``boundary`` split between the mouth rim and the outline in proportion to their
    lengths, inner rings at the same density along their length, as many rings as make ``vertices``."""
    p_mouth = _ellipse_perimeter(MOUTH_HALF_WIDTH, MOUTH_HALF_HEIGHT)
    p_outline = _ellipse_perimeter(OUTLINE_HALF_WIDTH, OUTLINE_HALF_HEIGHT)
    first = max(3, int(round(boundary * p_mouth / (p_mouth + p_outline))))
    last = boundary - first
    if last < 3:
        raise DataError(f"stand-in: boundary of {boundary} vertices is too small")
    density = boundary / (p_mouth + p_outline)
    for rings in range(2, vertices):
        _, a, b = _ring_shape(np.linspace(0.0, 1.0, rings))
        counts = np.maximum(3, np.round(density * _ellipse_perimeter(a, b))).astype(np.int64)
        counts[0], counts[-1] = first, last
        if counts.sum() >= vertices:
            break
    surplus = int(counts.sum()) - vertices
    if surplus and rings < 3:
        raise DataError(f"stand-in: {vertices} vertices cannot form rings with a {boundary}-vertex boundary")
    inner = np.arange(1, rings - 1)
    for _ in range(surplus):  # take the surplus from the largest inner ring, one vertex at a time
        counts[inner[np.argmax(counts[inner])]] -= 1
    if counts.min() < 3:
        raise DataError(f"stand-in: {vertices} vertices are too few for a {boundary}-vertex boundary")
    return counts


def _zip_rings(inner: int, outer: int, start_inner: int, start_outer: int) -> np.ndarray:
    """Triangles (counter-clockwise) of the strip between two rings of ``inner`` and ``outer`` vertices, both
    starting at angle 0: walk both rings by angle, always advancing the one whose next vertex comes first."""
    angles = np.concatenate([np.arange(1, inner + 1) / inner, np.arange(1, outer + 1) / outer])
    on_inner = np.concatenate([np.ones(inner, bool), np.zeros(outer, bool)])
    order = np.lexsort((~on_inner, angles))
    on_inner = on_inner[order]
    i = np.cumsum(on_inner) - on_inner
    j = np.cumsum(~on_inner) - ~on_inner
    a0, a1 = start_inner + i % inner, start_inner + (i + 1) % inner
    b0, b1 = start_outer + j % outer, start_outer + (j + 1) % outer
    return np.where(on_inner[:, None], np.stack([a0, b0, a1], 1), np.stack([a0, b0, b1], 1))


def depth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The face surface z(x, y) in the design frame: a curved sheet, a nose ridge, eye sockets, lips."""
    nose_y = np.where(y < -0.05, np.exp(-(((y + 0.05) / 0.10) ** 2)), np.exp(-(((y + 0.05) / 0.35) ** 2)))
    eyes = sum(np.exp(-((x - side * 0.31) ** 2 / (2 * 0.1**2) + (y - 0.29) ** 2 / (2 * 0.06**2))) for side in (-1, 1))
    return (0.42 - 1.9 * x**2 - 0.3 * (y + 0.2) ** 2 + 0.17 * np.exp(-(x**2) / (2 * 0.07**2)) * nose_y
            - 0.05 * eyes + 0.03 * np.exp(-(x**2) / (2 * 0.15**2) - (y - MOUTH_CENTRE[1]) ** 2 / (2 * 0.06**2)))


def _choose_keypoints(points: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """68 distinct vertices: the inner lips on the mouth rim at their slit angles, the others the nearest free
    vertex to their target."""
    keypoints = np.full(bf.LANDMARKS, -1, np.int64)
    rim = np.flatnonzero(ring == 0)
    rim_angle = 2 * np.pi * np.arange(rim.size) / rim.size
    for landmark, angle in _INNER_LIPS:
        gap = np.abs(np.angle(np.exp(1j * (rim_angle - angle))))
        gap[np.isin(rim, keypoints)] = np.inf
        keypoints[landmark] = rim[np.argmin(gap)]
    for landmark in np.flatnonzero(keypoints < 0):
        distance = np.hypot(*(points[:, :2] - LANDMARK_TARGETS[landmark]).T)
        distance[keypoints[keypoints >= 0]] = np.inf
        keypoints[landmark] = np.argmin(distance)
    return keypoints


def default_triangles(vertices: int) -> int:
    """The triangle count for ``vertices`` with BFM's proportions (70,789 for 35,709): boundary vertices (mouth rim
    + outline) scale with sqrt(vertices) from BFM's 629, and F = 2 V - boundary for a mesh with one hole."""
    boundary = (2 * BFM_FRONT_VERTICES - BFM_FRONT_TRIANGLES) * np.sqrt(vertices / BFM_FRONT_VERTICES)
    return 2 * vertices - int(round(boundary))


def standin_mesh(vertices: int = DEFAULT_VERTICES, triangles: int | None = None) -> StandinMesh:
    """The stand-in front face with exactly ``vertices`` vertices and ``triangles`` triangles (default
    ``default_triangles``); ``standin_mesh(35709, 70789)`` has BFM's counts."""
    triangles = default_triangles(vertices) if triangles is None else triangles
    if vertices < MIN_VERTICES:
        raise DataError(f"stand-in: at least {MIN_VERTICES} vertices, got {vertices}")
    boundary = 2 * vertices - triangles  # a triangulated annulus has F = 2 V - (boundary vertices)
    if not 6 <= boundary <= vertices // 2:
        raise DataError(f"stand-in: {triangles} triangles for {vertices} vertices needs 6 <= 2 V - F <= V / 2")
    counts = _ring_counts(vertices, boundary)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    w = np.linspace(0.0, 1.0, counts.size)
    xy = []
    for k, count in enumerate(counts):
        centre, a, b = _ring_shape(w[k])
        theta = 2 * np.pi * np.arange(count) / count
        xy.append(np.stack([centre[0] + a * np.cos(theta), centre[1] + b * np.sin(theta)], 1))
    xy = np.concatenate(xy)
    faces = np.concatenate([_zip_rings(counts[k], counts[k + 1], starts[k], starts[k + 1])
                            for k in range(counts.size - 1)]).astype(np.int64)
    corners = xy[faces]
    area = ((corners[:, 1, 0] - corners[:, 0, 0]) * (corners[:, 2, 1] - corners[:, 0, 1])
            - (corners[:, 1, 1] - corners[:, 0, 1]) * (corners[:, 2, 0] - corners[:, 0, 0]))
    valence = np.bincount(faces.reshape(-1), minlength=vertices)
    if len(faces) != triangles or area.min() <= 0 or valence.max() > bf.POINT_BUF_WIDTH:
        raise DataError(f"stand-in: no valid ring mesh for {vertices} vertices and {triangles} triangles")
    points = np.concatenate([xy, depth(xy[:, 0], xy[:, 1])[:, None]], 1)
    ring = np.repeat(np.arange(counts.size), counts)
    keypoints = _choose_keypoints(points, ring)
    if np.unique(keypoints).size != bf.LANDMARKS:
        raise DataError(f"stand-in: the mouth rim of {vertices} vertices / {triangles} triangles is too coarse for "
                         "8 distinct inner-lip landmarks")
    return StandinMesh(points, faces, keypoints, ring)


# ---- the expression that opens the jaw, colours, smooth bases -----------------------------------------------------
def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def jaw_opening(points: np.ndarray) -> np.ndarray:
    """(N, 3) displacement opening the jaw by one unit: below the mouth line, vertices move down by
    ``weight * (1 + 0.5 d / (mouth line - chin))`` (d: their distance below the line; so the chin moves 1.5x the
    lower lip). ``weight`` rises from 0 at the mouth line to 1 within a band that is 0.01 dm under the slit and
    widens past its corners, so the lips part and the cheeks stretch smoothly."""
    x, y = points[:, 0], points[:, 1]
    below = MOUTH_CENTRE[1] - y
    band = 0.01 + 1.2 * np.maximum(0.0, np.abs(x) - 0.8 * MOUTH_HALF_WIDTH)
    weight = np.where(below > 0, _smoothstep(below / band), 0.0)
    move = np.zeros_like(points)
    move[:, 1] = -weight * (1 + 0.5 * np.maximum(below, 0.0) / (MOUTH_CENTRE[1] - CHIN_Y))
    return move


def mean_texture(points: np.ndarray) -> np.ndarray:
    """(N, 3) RGB albedo in 0..255: skin, red lips, eyes (white with a dark iris), dark brows and nostrils."""
    x, y = points[:, 0], points[:, 1]
    colour = np.tile(np.array([200.0, 150.0, 128.0]), (len(points), 1))

    def paint(rgb, weight):
        colour[:] = colour * (1 - weight[:, None]) + np.asarray(rgb, np.float64) * weight[:, None]

    lips = (x / 0.26) ** 2 + ((y - MOUTH_CENTRE[1]) / 0.095) ** 2
    paint((175, 85, 85), _smoothstep((1 - lips) / 0.3))
    for side in (-1, 1):
        eye = ((x - side * 0.31) / 0.12) ** 2 + ((y - 0.295) / 0.04) ** 2
        paint((235, 230, 225), _smoothstep((1 - eye) / 0.3))
        paint((70, 50, 40), _smoothstep((0.03 - np.hypot(x - side * 0.31, y - 0.295)) / 0.01))
        brow = LANDMARK_TARGETS[17:22] * [-side, 1.0]  # the targets are the image-left (-x) brow
        paint((95, 70, 55), _smoothstep((0.025 - _polyline_distance(x, y, brow)) / 0.012))
        paint((120, 70, 60), _smoothstep((0.022 - np.hypot(x - side * 0.06, y + 0.15)) / 0.01))
    return colour


def _polyline_distance(x: np.ndarray, y: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Distance of the points (x, y) to the polyline through ``corners`` (K, 2)."""
    start, end = corners[:-1], corners[1:]
    step = end - start
    dx, dy = x[:, None] - start[:, 0], y[:, None] - start[:, 1]
    t = np.clip((dx * step[:, 0] + dy * step[:, 1]) / (step**2).sum(1), 0.0, 1.0)
    return np.min(np.hypot(dx - t * step[:, 0], dy - t * step[:, 1]), axis=1)


def _smooth_features(points: np.ndarray, order: int = 9) -> np.ndarray:
    """(N, order^2) cosines of the vertices' normalised (x, y), low frequencies weighted up: smooth fields."""
    u = (points[:, 0] - OUTLINE_CENTRE[0]) / OUTLINE_HALF_WIDTH
    v = (points[:, 1] - OUTLINE_CENTRE[1]) / OUTLINE_HALF_HEIGHT
    p, q = np.meshgrid(np.arange(order), np.arange(order), indexing="ij")
    p, q = p.reshape(-1), q.reshape(-1)
    waves = np.cos(np.pi * p * (u[:, None] + 1.4) / 2.8) * np.cos(np.pi * q * (v[:, None] + 1.4) / 2.8)
    return waves / (1.0 + p + q) ** 1.5


def orthonormal_fields(points: np.ndarray, count: int, rng: np.random.Generator,
                       first: np.ndarray | None = None) -> np.ndarray:
    """(3N, count) orthonormal columns, x/y/z (or r/g/b) interleaved per vertex, each a smooth random field over
    the vertices; ``first`` (3N,): column 0 is this direction, normalised (the rest orthogonal to it)."""
    features = _smooth_features(points)
    mix = rng.standard_normal((3, features.shape[1], count))
    fields = np.stack([features @ mix[axis] for axis in range(3)], 1).reshape(-1, count)
    if first is not None:
        fields = np.concatenate([first[:, None], fields[:, : count - 1]], 1)
    q, r = np.linalg.qr(fields)
    return q * np.sign(np.diag(r))  # fixed signs: column 0 is +first


# ---- the files ----------------------------------------------------------------------------------------------------
def _extra_points(count: int, rng: np.random.Generator) -> np.ndarray:
    """Vertices outside the front face (BFM's ears, neck and inner mouth): a band beyond the outline."""
    angle = rng.uniform(0, 2 * np.pi, count)
    radius = rng.uniform(1.03, 1.3, count)
    x = OUTLINE_CENTRE[0] + OUTLINE_HALF_WIDTH * radius * np.cos(angle)
    y = OUTLINE_CENTRE[1] + OUTLINE_HALF_HEIGHT * radius * np.sin(angle)
    return np.stack([x, y, depth(x, y)], 1)


def _sorted_subset(rng: np.random.Generator, total: int, size: int) -> np.ndarray:
    return np.sort(rng.choice(total, size=size, replace=False))


def _index_dtype(upper: int):
    return np.uint16 if upper <= np.iinfo(np.uint16).max else np.uint32


def standin_sources(vertices: int = DEFAULT_VERTICES, triangles: int | None = None,
                    seed: int = 0) -> tuple[bf.Bfm09Sources, StandinMesh, np.ndarray]:
    """The raw stand-in arrays (as ``bfm_files.read_bfm09_sources`` would read them from the written files),
    the mesh, and the Exp_Pca.bin mean (3 N_exp,) float32. Vertex counts keep BFM's proportions: N_exp =
    N * 53215 / 35709, N_shape = N_exp + N * 275 / 35709."""
    rng = np.random.default_rng(seed)
    mesh = standin_mesh(vertices, triangles)
    n_exp = int(round(vertices * BFM_EXP_VERTICES / BFM_FRONT_VERTICES))
    n_all = n_exp + max(1, int(round(vertices * (BFM_VERTICES - BFM_EXP_VERTICES) / BFM_FRONT_VERTICES)))
    # Sorted random subsets, as in the real index files: front vertex i is expression vertex front[i], which is
    # shape vertex trim[front[i]].
    trim = _sorted_subset(rng, n_all, n_exp)
    front = _sorted_subset(rng, n_exp, vertices)
    points = np.empty((n_all, 3))
    points[trim[front]] = mesh.vertices
    rest_exp = np.setdiff1d(np.arange(n_exp), front)
    rest_all = np.setdiff1d(np.arange(n_all), trim)
    extra = _extra_points(len(rest_exp) + len(rest_all), rng)
    points[trim[rest_exp]], points[rest_all] = extra[: len(rest_exp)], extra[len(rest_exp):]

    def scales(count, rms, power, size):  # eigenvalues: a unit coefficient moves each coordinate by rms/k^power
        return (rms * np.sqrt(3 * size) / np.arange(1, count + 1) ** power).astype(np.float32)

    shape_pc = orthonormal_fields(points, SHAPE_COMPONENTS, rng).astype(np.float32)
    tex_pc = orthonormal_fields(points, SHAPE_COMPONENTS, rng).astype(np.float32)
    exp_points = points[trim]
    jaw = jaw_opening(exp_points).reshape(-1)
    exp_pc = orthonormal_fields(exp_points, EXP_COMPONENTS, rng, first=JAW_OPEN_SIGN * jaw)
    exp_std = 0.004 * bf.DEEP3D_SCALE * np.sqrt(3 * n_exp) / np.arange(1, EXP_COMPONENTS + 1) ** 0.8
    exp_std[JAW_COMPONENT] = JAW_DROP * bf.DEEP3D_SCALE * np.linalg.norm(jaw)  # lower lip: JAW_DROP per unit
    exp_std = np.array([float(f"{value:g}") for value in exp_std])  # std_exp.txt holds 6 significant digits
    model = {
        "shapeMU": ((points + RAW_OFFSET) * bf.DEEP3D_SCALE).reshape(-1, 1).astype(np.float32),
        "shapePC": shape_pc,
        "shapeEV": scales(SHAPE_COMPONENTS, 0.02 * bf.DEEP3D_SCALE, 0.7, n_all).reshape(-1, 1),
        "texMU": mean_texture(points).reshape(-1, 1).astype(np.float32),
        "texPC": tex_pc,
        "texEV": scales(SHAPE_COMPONENTS, 12.0, 0.7, n_all).reshape(-1, 1),
        bf.STANDIN_KEY: np.array([MARKER]),
    }
    sources = bf.Bfm09Sources(Path("."), model, exp_pc.astype(np.float32), exp_std,
                              (front + 1).astype(np.float32).reshape(-1, 1),
                              (trim + 1).astype(_index_dtype(n_all)).reshape(-1, 1), _info(mesh), True)
    exp_mean = ((exp_points + RAW_OFFSET) * bf.DEEP3D_SCALE).reshape(-1).astype(np.float32)
    return sources, mesh, exp_mean


def _info(mesh: StandinMesh) -> dict:
    """facemodel_info.mat's arrays (float32 and 1-based, like the real file)."""
    count, faces = len(mesh.vertices), mesh.faces
    point_buf = np.full((count, bf.POINT_BUF_WIDTH), len(faces), np.int64)  # padding: F (F + 1 once 1-based)
    order = np.argsort(faces.reshape(-1), kind="stable")
    vertex = faces.reshape(-1)[order]
    slot = np.arange(len(vertex)) - np.searchsorted(vertex, vertex)
    point_buf[vertex, slot] = order // 3
    x, y = mesh.vertices[:, 0], mesh.vertices[:, 1]
    radius = np.hypot((x - OUTLINE_CENTRE[0]) / OUTLINE_HALF_WIDTH, (y - OUTLINE_CENTRE[1]) / OUTLINE_HALF_HEIGHT)
    front = radius < 0.88  # the smaller region of the photometric loss
    position = np.cumsum(front) - 1
    tri_mask = faces[front[faces].all(1)]
    skin = ((np.abs(x) > 0.3) & (y > -0.3) & (y < 0.15) | (y > 0.6)) & (radius < 0.85)  # cheeks and forehead
    as_f32 = lambda array: np.asarray(array, np.float32)  # noqa: E731
    return {"tri": as_f32(faces + 1), "point_buf": as_f32(point_buf + 1), "keypoints": as_f32(mesh.keypoints + 1)[None],
            "frontmask2": as_f32(front)[None], "tri_mask2": as_f32(position[tri_mask] + 1),
            "frontmask2_idx": as_f32(np.flatnonzero(front) + 1)[:, None], "skinmask": as_f32(skin)[None],
            bf.STANDIN_KEY: np.array([MARKER])}


def _write_exp_pca(path: Path, mean: np.ndarray, components: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.array([components.shape[1]], "<i4").tofile(handle)
        mean.astype("<f4").tofile(handle)
        np.ascontiguousarray(components.T, "<f4").tofile(handle)


def write_standin_bfm(folder: str | Path, vertices: int = DEFAULT_VERTICES, triangles: int | None = None,
                      seed: int = 0, raw: bool = True, derived: bool = True, audiodvp: bool = False) -> Path:
    """Write the stand-in into ``folder``: the raw files (``raw``: 01_MorphableModel.mat, Exp_Pca.bin,
    std_exp.txt, BFM_front_idx.mat, BFM_exp_idx.mat, facemodel_info.mat), always similarity_Lm3D_all.mat, the derived
    ``BFM_model_front.mat`` (``derived``) and AudioDVP's ``data.mat`` (``audiodvp``), each built from the raw
    arrays by the same code as ``talkingface face3d build-bfm``, and ``STANDIN.txt``. Every file is written
    atomically; the same arguments give the same files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sources, mesh, exp_mean = standin_sources(vertices, triangles, seed)
    atomic_write_text(folder / bf.STANDIN_FILE, _standin_text(sources, mesh, seed))
    if raw:
        bf.write_mat(folder / bf.MORPHABLE_MODEL, sources.model)
        _write_exp_pca(folder / bf.EXP_PCA, exp_mean, sources.exp_pc)
        atomic_write_text(folder / bf.STD_EXP, " ".join(f"{value:g}" for value in sources.exp_std) + "\n")
        bf.write_mat(folder / bf.FRONT_INDEX, {"idx": sources.front_idx, bf.STANDIN_KEY: np.array([MARKER])})
        bf.write_mat(folder / bf.EXP_INDEX, {"trimIndex": sources.trim_index, bf.STANDIN_KEY: np.array([MARKER])})
        bf.write_mat(folder / bf.FACEMODEL_INFO, sources.info)
    # Deep3DFaceRecon's own BFM/ file (align_img's template), so written with the raw and the derived files alike
    centred = mesh.vertices - mesh.vertices.mean(0)
    bf.write_mat(folder / bf.LANDMARKS_3D, {"lm": centred[mesh.keypoints].astype(np.float32),
                                            bf.STANDIN_KEY: np.array([MARKER])})
    if derived:
        bf.write_mat(folder / bf.BFM_FRONT, bf.transfer_bfm09_arrays(sources))
    if audiodvp:
        bf.write_mat(folder / bf.AUDIODVP_DATA, bf.audiodvp_data_arrays(sources))
    logger.info("wrote the synthetic BFM stand-in (%d vertices, %d triangles) to %s", len(mesh.vertices),
                len(mesh.faces), folder)
    return folder


def _standin_text(sources: bf.Bfm09Sources, mesh: StandinMesh, seed: int) -> str:
    shape_vertices = sources.model["shapePC"].shape[0] // 3
    return (
        "SYNTHETIC STAND-IN, NOT THE BASEL FACE MODEL.\n\n"
        "Written by talkingface.face3d.standin.write_standin_bfm for tests and the demo: the file layouts of BFM09\n"
        "(01_MorphableModel.mat), Guo et al.'s Exp_Pca.bin and Deep3DFaceRecon's index files, filled with a\n"
        "synthetic face. Results made with it say nothing about the real model. Every .mat file here carries the\n"
        f"variable {bf.STANDIN_KEY!r}.\n\n"
        f"front vertices {len(mesh.vertices)}, triangles {len(mesh.faces)}, expression-model vertices "
        f"{sources.trim_index.size}, shape-model vertices {shape_vertices}, seed {seed}\n"
        f"expression coefficient {JAW_COMPONENT} opens the jaw when negative ({JAW_DROP} dm of lower-lip drop per "
        "unit)\n\nSee docs/face3d.md, 'Face model files and the stand-in'.\n")


BFM_VERTICES, BFM_TRIANGLES = 35709, 70789  # the Basel Face Model's front face (BFM_model_front.mat)


def bfm_sized_standin_config(work: str | Path) -> dict:
    """Config overrides that fit and render the BFM-sized stand-in, written into ``work`` once: the offline
    ``benchmark_config`` of the models built on the 3D face foundation (AudioDVP, GSmoothFace)."""
    folder = bfm_sized_standin(Path(work) / "face3d_standin_bfm_size")
    return {"face3d": {"bfm_folder": str(folder), "standin": False}}


def bfm_sized_standin(folder: str | Path) -> Path:
    """``folder`` holding the stand-in at the real model's size (both conventions' files), written once: what a
    timing run without the Basel Face Model renders and fits (``talkingface benchmark``)."""
    folder = Path(folder)
    if not (folder / bf.AUDIODVP_DATA).is_file() or not (folder / bf.BFM_FRONT).is_file():
        write_standin_bfm(folder, BFM_VERTICES, BFM_TRIANGLES, audiodvp=True)
    return folder
