"""CPBD, the cumulative probability of blur detection (Narvekar & Karam 2011), as the ``cpbd`` package computes it.

See ``docs/metrics_quality.md`` for the definition and its quirks.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import canny

from ..registry import register_metric
from .frames import video_chunks
from .metric import Metric, VideoSample
from .ssim import grey_uint8

BLOCK = 64  # side of the square blocks that are classified as edge blocks
EDGE_BLOCK_FRACTION = 0.002  # a block with more than this fraction of Canny edge pixels is an edge block
BETA = 3.6  # slope of the psychometric blur-detection function
JNB_LOW_CONTRAST, JNB_HIGH_CONTRAST = 5.0, 3.0  # just-noticeable-blur edge widths for contrast <= 50 and > 50
JNB_CONTRAST_LIMIT = 50
MAX_WIDTH_STEPS = 100  # the width search on each side stops after this many extra pixels
DETECTION_LIMIT = 63  # percent: CPBD is the fraction of edges whose blur-detection probability rounds to <= 63 %


def _sobel_edges(image: np.ndarray) -> np.ndarray:
    """``(H, W) bool`` thinned vertical Sobel edges of a float ``(H, W)`` image, as Octave's ``edge(I, 'sobel')``."""
    kernel = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]) / 8.0
    strength = ndimage.convolve(image, kernel, mode="reflect") ** 2
    strength[strength <= 2 * np.sqrt(strength.mean())] = 0
    zero_col, zero_row = np.zeros((len(strength), 1)), np.zeros((1, strength.shape[1]))
    along_x = (strength > np.hstack([zero_col, strength[:, :-1]])) & (strength > np.hstack([strength[:, 1:], zero_col]))
    along_y = (strength > np.vstack([zero_row, strength[:-1]])) & (strength > np.vstack([strength[1:], zero_row]))
    return along_x | along_y


def _run_lengths(condition: np.ndarray, reverse: bool) -> np.ndarray:
    """``(H, W) int``: how many consecutive True values of each row start at each pixel, walking right
    (or left when ``reverse``) from it."""
    runs = np.zeros(condition.shape, dtype=np.int64)
    columns = range(condition.shape[1]) if reverse else range(condition.shape[1] - 1, -1, -1)
    step = -1 if reverse else 1
    for col in columns:
        neighbour = col + step
        previous = runs[:, neighbour] if 0 <= neighbour < condition.shape[1] else 0
        runs[:, col] = np.where(condition[:, col], previous + 1, 0)
    return runs


def _edge_widths(image: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``(H, W) float`` Marziliano edge widths at the horizontal-gradient edge pixels of ``edges``, 0 elsewhere.

    The width counts the pixels on both sides over which the intensity keeps rising or falling monotonically
    (at most ``MAX_WIDTH_STEPS + 1`` per side); only gradients quantised to 0 or ±180 degrees are measured.
    """
    grad_y, grad_x = np.gradient(image)
    angles = np.where(grad_x != 0, np.degrees(np.arctan2(grad_y, grad_x)), 0.0)
    widths = np.zeros(image.shape)
    if not angles.any():  # the reference measures nothing when every angle is 0
        return widths
    quantised = 45 * np.round(angles / 45)
    inner = np.zeros(image.shape, dtype=bool)
    inner[1:-1, 1:-1] = True
    # rises[:, i]: the pixel left of i is brighter; falls[:, i]: it is darker (False at the left border)
    rises = np.zeros(image.shape, dtype=bool)
    falls = np.zeros(image.shape, dtype=bool)
    rises[:, 1:] = image[:, :-1] > image[:, 1:]
    falls[:, 1:] = image[:, :-1] < image[:, 1:]
    # right_rises[:, i]: the pixel right of i is brighter (False at the right border)
    right_rises = np.zeros(image.shape, dtype=bool)
    right_falls = np.zeros(image.shape, dtype=bool)
    right_rises[:, :-1] = image[:, 1:] > image[:, :-1]
    right_falls[:, :-1] = image[:, 1:] < image[:, :-1]

    def side(condition: np.ndarray, reverse: bool, offset: int) -> np.ndarray:
        runs = np.roll(_run_lengths(condition, reverse), -offset, axis=1)
        return 1 + np.minimum(runs, MAX_WIDTH_STEPS)

    falling = inner & edges & (np.abs(quantised) == 180)  # intensity falls from left to right
    rising = inner & edges & (quantised == 0)
    widths[falling] = (side(rises, True, -1) + side(right_falls, False, 1))[falling]
    widths[rising] = (side(falls, True, -1) + side(right_rises, False, 1))[rising]
    return widths


def cpbd(image: np.ndarray) -> float:
    """CPBD in [0, 1] (higher is sharper) of an ``(H, W) uint8`` grey image; images under 64 px give 0."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"cpbd needs an (H, W) uint8 grey image, got {image.shape} {image.dtype}")
    values = image.astype(np.float64)
    block_edges = canny(values)
    widths = _edge_widths(values, _sobel_edges(values))
    histogram = np.zeros(101)
    for top in range(0, values.shape[0] - BLOCK + 1, BLOCK):
        for left in range(0, values.shape[1] - BLOCK + 1, BLOCK):
            block = (slice(top, top + BLOCK), slice(left, left + BLOCK))
            if np.count_nonzero(block_edges[block]) <= BLOCK * BLOCK * EDGE_BLOCK_FRACTION:
                continue
            contrast = int(values[block].max() - values[block].min())
            jnb = JNB_LOW_CONTRAST if contrast <= JNB_CONTRAST_LIMIT else JNB_HIGH_CONTRAST
            block_widths = widths[block][widths[block] != 0]
            probability = 1 - np.exp(-np.abs(block_widths / jnb) ** BETA)
            np.add.at(histogram, np.rint(probability * 100).astype(np.int64), 1)
    total = histogram.sum()
    return float(histogram[:DETECTION_LIMIT + 1].sum() / total) if total else 0.0


def cpbd_frames(frames: np.ndarray) -> list[float]:
    """CPBD of each frame of a ``(T, H, W, 3) uint8`` RGB array (cv2-style grey)."""
    return [cpbd(grey_uint8(frame)) for frame in frames]


@register_metric("cpbd")
class CPBDMetric(Metric):
    """CPBD of the generated video (full frames, grey), mean over frames; ``evaluate.cpbd_stride`` skips frames."""

    needs_reference = False
    higher_is_better = {"cpbd": True}

    def score(self, generated: VideoSample, reference: VideoSample | None) -> dict[str, float]:
        stride = int(self.option("evaluate.cpbd_stride", 1))
        values = [value for chunk in video_chunks(generated, stride) for value in cpbd_frames(chunk)]
        return {"cpbd": float(np.mean(values))}
