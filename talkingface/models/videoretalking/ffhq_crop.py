"""VideoReTalking's step-0 crop (the release's ``utils/ffhq_preprocess.py: Croper`` and ``inference.py``): the FFHQ
alignment quad of one frame's 68 landmarks gives one box that every frame of the video is cut to.

From the landmarks: eye centres, mouth corners, ``x = eye_to_eye - flipud(eye_to_mouth) * [-1, 1]`` scaled to
``max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)``, centre ``c = eye_avg + 0.1 eye_to_mouth``, the quad ``c -+ x -+ y``; a
border of ``max(rint(0.1 qsize), 3)`` around the quad's bounding box clipped to the image (``crop``); the quad then
taken relative to that crop, shifted by half a pixel (``quad``). Quirks kept, as the release computes them: the
quad's bottom is clipped to the image's *width*; for faces with ``qsize >= 4 output_size`` the release first shrinks
the image (``shrink``) and computes both boxes in the shrunken image while cutting the full-size frames with them
(``FfhqCrop.shrink`` says when that happened). ``region`` is the release's ``(oy1, oy2, ox1, ox2)``: where the
256 x 256 crop is pasted back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FfhqCrop:
    """``crop`` (left, top, right, bottom) in the frame, ``quad`` (lx, ly, rx, ry) float inside the crop, ``shrink``
    the release's shrink factor (boxes in a shrunken image when > 1), ``region`` (oy1, oy2, ox1, ox2) in the frame."""

    crop: tuple[int, int, int, int]
    quad: tuple[float, float, float, float]
    shrink: int
    region: tuple[int, int, int, int]

    def cut(self, frame: np.ndarray) -> np.ndarray:
        """A frame (H, W, C) cut as the release cuts every frame: the crop, then the integer quad inside it."""
        clx, cly, crx, cry = self.crop
        lx, ly, rx, ry = (int(v) for v in self.quad)
        return frame[cly:cry, clx:crx][ly:ry, lx:rx]


def ffhq_crop(landmarks: np.ndarray, size: tuple[int, int], output_size: int = 512) -> FfhqCrop:
    """The release's ``Croper.align_face`` box for 68 landmarks (x, y) in a frame of ``size`` (width, height)."""
    lm = np.asarray(landmarks)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks (68, 2), got {lm.shape}")
    width, height = size
    eye_left, eye_right = np.mean(lm[36:42], axis=0), np.mean(lm[42:48], axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    qsize = np.hypot(*x) * 2
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:  # the release resizes the image by 1 / shrink (rounded) and works there
        width, height = int(np.rint(float(width) / shrink)), int(np.rint(float(height) / shrink))
        quad /= shrink
        qsize /= shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))), int(np.ceil(max(quad[:, 0]))),
            int(np.ceil(max(quad[:, 1]))))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0), min(crop[2] + border, width),
            min(crop[3] + border, height))
    if crop[2] - crop[0] < width or crop[3] - crop[1] < height:
        quad -= crop[0:2]
    flat = (quad + 0.5).flatten()
    lx, ly = max(min(flat[0], flat[2]), 0), max(min(flat[1], flat[7]), 0)
    rx = min(max(flat[4], flat[6]), width)
    ry = min(max(flat[3], flat[5]), width)  # the release clips the bottom to the width
    clx, cly, crx, cry = crop
    full_height, full_width = size[1], size[0]
    region = (cly + int(ly), min(cly + int(ry), full_height), clx + int(lx), min(clx + int(rx), full_width))
    return FfhqCrop(crop, (float(lx), float(ly), float(rx), float(ry)), shrink, region)
