"""Face tracks and crops of joonson/syncnet_python's ``run_pipeline.py``, the LSE ``face`` protocol.

Per 25 fps video: faces are detected on every frame, shots are found with PySceneDetect, detections
are linked into tracks within each shot (``track_shot``), each track's box size and centre are
median-filtered (``crop_parameters``) and every frame is cropped to a square of 1.4x the box, shifted
down to include the chin, with constant padding 110 where it leaves the frame (``crop_face``).
The rules and their quirks follow the reference; see ``docs/metrics_lse.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import signal

from .inputs import FACE_SIZE


@dataclass(frozen=True)
class TrackingOptions:
    """``run_pipeline.py``'s defaults: ``--min_track 100 --num_failed_det 25 --min_face_size 100
    --crop_scale 0.40``, IoU threshold 0.5, median kernel 13, padding value 110."""

    min_track: int = 100
    num_failed_det: int = 25
    min_face_size: float = 100.0
    iou_threshold: float = 0.5
    crop_scale: float = 0.4
    median_kernel: int = 13
    pad_value: int = 110


@dataclass
class FaceTrack:
    """Consecutive frame indices ``frames`` (absolute, 25 fps) and one ``(x1, y1, x2, y2)`` box per frame."""

    frames: np.ndarray
    boxes: np.ndarray

    @property
    def start(self) -> int:
        return int(self.frames[0])

    @property
    def end(self) -> int:
        """Last frame index (inclusive)."""
        return int(self.frames[-1])


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (no +1 pixel convention)."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _take_track(frames: list[list[tuple[int, np.ndarray]]], options: TrackingOptions) -> list[tuple[int, np.ndarray]]:
    """One greedy pass of ``track_shot``, removing the faces it takes from ``frames``.

    The reference removes faces from each frame's list while iterating over it, so after a face is
    taken the one that followed it in that frame is not looked at in this pass; that is kept.
    """
    track: list[tuple[int, np.ndarray]] = []
    for faces in frames:
        i = 0
        while i < len(faces):
            frame, box = faces[i]
            if not track:
                track.append(faces.pop(i))
                i += 1  # the list shifted left under the reference's iterator: one face is skipped
                continue
            if frame - track[-1][0] > options.num_failed_det:
                break  # only leaves this frame's loop, as in the reference; later frames are further away
            if box_iou(box, track[-1][1]) > options.iou_threshold:
                track.append(faces.pop(i))
                i += 1
                continue
            i += 1
    return track


def track_shot(detections: Sequence[np.ndarray], first_frame: int, options: TrackingOptions) -> list[FaceTrack]:
    """Face tracks of one shot from its per-frame ``(K, 4+)`` detections (frame ``first_frame + i``).

    Tracks are built greedily one after another (IoU > 0.5 with the track's last face, at most
    ``num_failed_det`` frames later). A track is kept when it has more than ``min_track`` detections
    and the mean width or height of its boxes, linearly interpolated over the frames without a
    detection, exceeds ``min_face_size``.
    """
    frames = [[(first_frame + i, np.asarray(d[:4], dtype=np.float64)) for d in dets]
              for i, dets in enumerate(detections)]
    tracks = []
    while True:
        track = _take_track(frames, options)
        if not track:
            return tracks
        if len(track) <= options.min_track:
            continue
        numbers = np.array([frame for frame, _ in track])
        boxes = np.stack([box for _, box in track])
        every = np.arange(numbers[0], numbers[-1] + 1)
        filled = np.stack([np.interp(every, numbers, boxes[:, j]) for j in range(4)], axis=1)
        size = max(np.mean(filled[:, 2] - filled[:, 0]), np.mean(filled[:, 3] - filled[:, 1]))
        if size > options.min_face_size:
            tracks.append(FaceTrack(every, filled))


def crop_parameters(track: FaceTrack, options: TrackingOptions) -> np.ndarray:
    """``(T, 3)`` half-size ``s``, centre ``x`` and centre ``y`` per frame, each median-filtered over 13 frames.

    ``scipy.signal.medfilt`` pads with zeros, so the first and last 6 frames of a track take the
    smallest of their neighbours' values, as in the reference.
    """
    boxes = track.boxes
    size = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    return np.stack([signal.medfilt(v, kernel_size=options.median_kernel) for v in (size, centre_x, centre_y)],
                    axis=1)


def crop_face(frame: np.ndarray, size: float, centre_x: float, centre_y: float,
              options: TrackingOptions) -> np.ndarray:
    """The reference crop of an ``(H, W, 3)`` frame: rows ``[y - s, y + s(1 + 2c))``, columns
    ``[x - s(1 + c), x + s(1 + c))`` with ``c = crop_scale``, in the frame padded by ``int(s(1 + 2c))``
    pixels of value 110; corners truncated to integers as the reference's slicing does."""
    scale = options.crop_scale
    pad = int(size * (1 + 2 * scale))
    padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=options.pad_value)
    my, mx = centre_y + pad, centre_x + pad
    return padded[int(my - size):int(my + size * (1 + 2 * scale)),
                  int(mx - size * (1 + scale)):int(mx + size * (1 + scale))]


def resize_to_face_size(crop: np.ndarray) -> np.ndarray:
    """``cv2.resize(crop, (224, 224))`` of the reference: bilinear, half-pixel centres, no antialiasing,
    rounded to uint8."""
    x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(FACE_SIZE, FACE_SIZE), mode="bilinear", align_corners=False, antialias=False)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
