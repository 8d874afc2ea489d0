"""Mouth animation of the demo face driven by speech energy, plus slight head motion and lighting drift."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d, map_coordinates
from scipy.spatial import Delaunay
from skimage.draw import polygon
from skimage.transform import SimilarityTransform, warp

from .face import BaseFace

# How far each landmark (0-based iBUG index) moves down at full opening, as a fraction of the lower
# lip's travel. The lips do the talking: the chin and jaw sides barely move, so that the lower face outside
# a lip-sync model's mouth mask (DINet's ends at about the chin) does not give the opening away.
LOWER_FACE_PROFILE = {
    65: 0.9, 66: 1.0, 67: 0.9,                       # inner lower lip
    55: 0.7, 56: 0.95, 57: 1.0, 58: 0.95, 59: 0.7,   # outer lower lip
    48: 0.25, 54: 0.25, 60: 0.3, 64: 0.3,            # lip corners
    6: 0.04, 7: 0.08, 8: 0.1, 9: 0.08, 10: 0.04,  # jaw and chin
}
LIP_TRAVEL = 0.28         # lower-lip travel at opening 1, in mouth widths (48-54)
UPPER_TEETH = 0.6         # upper teeth reach this far into the closed inner-lip gap, from the top
RING_SCALE = 1.35         # fixed ring: the jaw line enlarged about the face centre
MARGIN = 0.15             # warped region beyond the moving points, in jaw widths
# The cavity is darkest under the upper teeth and turns reddish towards the tongue below.
CAVITY_TOP = np.array([40.0, 14.0, 16.0], np.float32)
CAVITY_BOTTOM = np.array([105.0, 42.0, 44.0], np.float32)
FULL_DARKNESS_AT = 0.3    # opening from which the cavity is fully dark

MAX_ROTATION_DEG = 2.0
MAX_SHIFT_PX = 4.0        # at 256 px; scaled with the frame size
MAX_SCALE = 0.02
MAX_BRIGHTNESS = 0.06
MAX_TINT = 0.02           # per colour channel, on top of brightness: at most 8 % in all


def mouth_opening(audio: np.ndarray, sample_rate: int = 16000, fps: float = 25.0) -> np.ndarray:
    """Per-video-frame speech energy: RMS of ``(N,)`` audio over each frame's window, in [0, 1].

    Frame ``t`` uses the seconds ``[t, t + 1) / fps`` (no lead or lag); the envelope is smoothed over
    neighbouring frames and normalised per clip. Returns ``(ceil(N * fps / sample_rate),)`` float32.
    """
    hop = sample_rate / fps
    num_frames = int(np.ceil(len(audio) / hop))
    if num_frames == 0:
        return np.zeros(0, np.float32)
    bounds = np.round(np.arange(num_frames + 1) * hop).astype(int)
    power = np.concatenate([[0.0], np.cumsum(np.asarray(audio, np.float64) ** 2)])
    power = np.append(power, np.full(max(0, bounds[-1] + 1 - len(power)), power[-1]))
    # A difference of cumulative sums can round to just below zero over silence.
    rms = np.sqrt(np.maximum(power[bounds[1:]] - power[bounds[:-1]], 0.0) / hop)
    envelope = gaussian_filter1d(rms, sigma=0.7, mode="nearest")
    span = envelope.max() - envelope.min()
    if span <= 0:
        return np.zeros(num_frames, np.float32)
    return ((envelope - envelope.min()) / span).astype(np.float32)


class MouthAnimator:
    """Opens the mouth of a base face by a piecewise-affine warp of the lower face.

    The triangulation of the moving landmarks and their fixed anchors is built once; each frame only
    moves its vertices, so the warp changes smoothly with the opening.
    """

    def __init__(self, face: BaseFace):
        self.image = face.image.astype(np.float32)
        self.landmarks = np.asarray(face.landmarks, np.float64)
        height, width = face.image.shape[:2]
        marks = self.landmarks
        travel = LIP_TRAVEL * np.linalg.norm(marks[54] - marks[48])
        self.displacement = np.zeros((68, 2))
        for index, weight in LOWER_FACE_PROFILE.items():
            self.displacement[index, 1] = weight * travel

        pairs = [(61, 67), (62, 66), (63, 65)]
        teeth = np.array([marks[up] + UPPER_TEETH * (marks[low] - marks[up]) for up, low in pairs])
        moving = np.array(sorted(LOWER_FACE_PROFILE))
        fixed_marks = np.array([i for i in range(68) if i not in LOWER_FACE_PROFILE])
        centre = marks.mean(axis=0)
        ring = centre + RING_SCALE * (marks[:17] - centre)

        reach = np.concatenate([marks[moving], marks[moving] + self.displacement[moving], teeth])
        margin = MARGIN * (marks[16, 0] - marks[0, 0])
        x0, y0 = np.maximum(np.floor(reach.min(axis=0) - margin), 0).astype(int)
        x1, y1 = np.minimum(np.ceil(reach.max(axis=0) + margin), (width - 1, height - 1)).astype(int)
        self.box = (int(x0), int(y0), int(x1), int(y1))
        anchors = np.concatenate([marks[fixed_marks], ring, teeth])
        inside = ((anchors[:, 0] > x0 + 2) & (anchors[:, 0] < x1 - 2) &
                  (anchors[:, 1] > y0 + 2) & (anchors[:, 1] < y1 - 2))
        border = _rectangle_points(x0, y0, x1, y1, spacing=max(8.0, (x1 - x0) / 6))

        # Vertex order: moving landmarks first, then the fixed points.
        self.points = np.concatenate([marks[moving], anchors[inside], border])
        self.moves = np.zeros_like(self.points)
        self.moves[:len(moving)] = self.displacement[moving]
        self.triangles = Delaunay(self.points).simplices
        self.moving_triangles = self.triangles[(self.triangles < len(moving)).any(axis=1)]
        self.teeth = teeth
        rows, cols = np.mgrid[y0:y1 + 1, x0:x1 + 1]
        self._grid = np.stack([cols.ravel(), rows.ravel(), np.ones(rows.size)], axis=1)
        self._mouth_sigma = 0.8 * width / 256

    def displaced_landmarks(self, opening: float) -> np.ndarray:
        """The 68 landmarks ``(68, 2)`` (x, y) with the mouth opened by ``opening`` in [0, 1]."""
        return self.landmarks + opening * self.displacement

    def triangle_areas(self, opening: float) -> np.ndarray:
        """Signed areas ``(K,)`` of the warp's triangles at ``opening`` (a sign change is a fold)."""
        corners = (self.points + opening * self.moves)[self.triangles]
        edge1, edge2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
        return 0.5 * (edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0])

    def render(self, opening: float) -> np.ndarray:
        """The base face with the mouth opened by ``opening``: ``(H, W, 3)`` float32 in [0, 255]."""
        frame = self.image.copy()
        if opening <= 0:
            return frame
        x0, y0, x1, y1 = self.box
        shape = (y1 - y0 + 1, x1 - x0 + 1)
        moved = self.points + opening * self.moves
        # Every output pixel takes the affine map of the moving triangle it falls in; all other
        # pixels lie in triangles of fixed vertices (or on the border), where the map is the identity.
        triangles = self.moving_triangles
        label = np.full(shape, len(triangles), np.int32)
        for index, triangle in enumerate(triangles):
            rr, cc = polygon(moved[triangle, 1] - y0, moved[triangle, 0] - x0, shape)
            label[rr, cc] = index
        homogeneous = np.concatenate([moved[triangles], np.ones((len(triangles), 3, 1))], axis=2)
        affine = np.linalg.solve(homogeneous, self.points[triangles])
        affine = np.concatenate([affine, [[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]])
        source = np.einsum("pi,pij->pj", self._grid, affine[label.ravel()])
        coords = [source[:, 1].reshape(shape), source[:, 0].reshape(shape)]
        region = np.stack([map_coordinates(self.image[..., c], coords, order=1, mode="nearest")
                           for c in range(3)], axis=-1)
        frame[y0:y1 + 1, x0:x1 + 1] = self._darken_mouth(region, opening)
        return frame

    def _darken_mouth(self, region: np.ndarray, opening: float) -> np.ndarray:
        """Fill the opened gap below the upper teeth with a soft-edged dark cavity."""
        x0, y0 = self.box[:2]
        lips = self.displaced_landmarks(opening)
        outline = np.concatenate([lips[[60]], self.teeth, lips[[64, 65, 66, 67]]])
        mask = np.zeros(region.shape[:2], np.float32)
        rr, cc = polygon(outline[:, 1] - y0, outline[:, 0] - x0, mask.shape)
        mask[rr, cc] = 1.0
        alpha = gaussian_filter(mask, self._mouth_sigma)[..., None] * min(1.0, opening / FULL_DARKNESS_AT)
        top, bottom = self.teeth[:, 1].min() - y0, lips[65:68, 1].max() - y0
        depth = np.clip((np.arange(mask.shape[0]) - top) / max(bottom - top, 1.0), 0, 1)[:, None, None]
        colour = CAVITY_TOP + depth ** 2 * (CAVITY_BOTTOM - CAVITY_TOP)
        return region * (1 - alpha) + colour * alpha


def _rectangle_points(x0: float, y0: float, x1: float, y1: float, spacing: float) -> np.ndarray:
    """Points along the border of a rectangle, about ``spacing`` apart, corners included."""
    def steps(a, b):
        return np.linspace(a, b, max(2, int(np.ceil((b - a) / spacing)) + 1))
    xs, ys = steps(x0, x1), steps(y0, y1)
    return np.unique(np.concatenate([
        np.stack([xs, np.full_like(xs, y0)], 1), np.stack([xs, np.full_like(xs, y1)], 1),
        np.stack([np.full_like(ys, x0), ys], 1), np.stack([np.full_like(ys, x1), ys], 1)]), axis=0)


@dataclass(frozen=True)
class HeadMotion:
    """Per-frame head pose and lighting: smooth random walks within small bounds."""

    rotation: np.ndarray  # (T,) degrees
    shift: np.ndarray     # (T, 2) pixels (x, y)
    scale: np.ndarray     # (T,) factor around 1
    gain: np.ndarray      # (T, 3) RGB gain around 1

    @classmethod
    def random(cls, num_frames: int, size: int, rng: np.random.Generator) -> "HeadMotion":
        """Draw a motion for ``num_frames`` frames of a ``size`` px frame from ``rng``."""
        def walk(count: int = 1) -> np.ndarray:
            # Integrated noise, smoothed to a slow drift and scaled so its peak reaches the bound.
            steps = np.cumsum(rng.standard_normal((num_frames, count)), axis=0)
            steps = gaussian_filter1d(steps, sigma=3.0, axis=0, mode="nearest")
            steps -= steps.mean(axis=0)
            peak = np.abs(steps).max(axis=0)
            return steps / np.where(peak > 0, peak, 1.0)
        shift = walk(2) * MAX_SHIFT_PX * size / 256
        gain = 1.0 + MAX_BRIGHTNESS * walk(1) + MAX_TINT * walk(3)
        return cls(walk(1)[:, 0] * MAX_ROTATION_DEG, shift, 1.0 + walk(1)[:, 0] * MAX_SCALE, gain)

    def transform(self, index: int, centre: np.ndarray) -> SimilarityTransform:
        """Frame ``index``'s similarity in (x, y) pixels, rotating and scaling about ``centre``."""
        to_origin = SimilarityTransform(translation=-centre)
        pose = SimilarityTransform(scale=self.scale[index], rotation=np.deg2rad(self.rotation[index]),
                                   translation=centre + self.shift[index])
        return SimilarityTransform(matrix=pose.params @ to_origin.params)


def animate(face: BaseFace, openings: np.ndarray,
            rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(frame, landmarks)`` per opening: ``(H, W, 3)`` uint8 RGB and ``(68, 2)`` float64 (x, y).

    ``openings`` is ``(T,)`` in [0, 1]; head motion and lighting are drawn from ``rng``.
    """
    animator = MouthAnimator(face)
    size = face.image.shape[0]
    motion = HeadMotion.random(len(openings), size, rng)
    centre = animator.landmarks.mean(axis=0)
    for index, opening in enumerate(openings):
        mouth = animator.render(float(opening))
        pose = motion.transform(index, centre)
        moved = warp(mouth, pose.inverse, order=1, mode="edge", preserve_range=True)
        frame = np.clip(np.round(moved * motion.gain[index]), 0, 255).astype(np.uint8)
        yield frame, pose(animator.displaced_landmarks(float(opening)))
