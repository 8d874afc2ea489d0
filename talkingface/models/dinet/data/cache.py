"""Pre-cropped faces of a stored clip, written once and memory-mapped (the official "crop once" step).

The store keeps whole uncropped videos, which can be minutes long and decode only as a stream, so
cropping on the fly would decode a video up to the sampled frame for every sample. Instead the
accepted 9-frame clips of each stored clip are cropped and resized to the face size in one
streaming decode pass and saved as ``<cache_dir>/<clip>.<key>.npy``: a ``(K, 9, H, W, 3)`` uint8
array, read back with ``mmap_mode="r"`` so each worker only pages in the frames it samples.
``key`` hashes the video file (size, mtime), the face size and every crop box, so a changed video,
mouth size or crop plan writes a new file. Disk: ``K * 9 * H * W * 3`` bytes per clip, 25 KB a frame
at M = 64, 100 KB at 128, 400 KB at 256.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ....io_utils import atomic_path
from ....media import iter_frames
from .clips import ClipPlan
from .crops import crop_face


def cache_key(video_path: Path, size: tuple[int, int], plan: ClipPlan) -> str:
    """16 hex digits identifying the crops of ``plan`` at ``size`` from this version of the video."""
    stat = video_path.stat()
    payload = {"video": [stat.st_size, stat.st_mtime_ns], "size": list(size), "version": 1,
               "clips": [[c.start, [list(b) for b in c.boxes]] for c in plan.accepted]}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


CropFunction = Callable[[np.ndarray, Any, tuple[int, int]], np.ndarray]


def write_crops(video_path: Path, plan: ClipPlan, size: tuple[int, int], path: Path,
                crop: CropFunction = crop_face) -> Path:
    """Crop every accepted clip of ``plan`` from one streaming decode of ``video_path`` into ``path``;
    ``crop(frame, box, size)`` makes one face (DINet's box crop by default, LawDNet's aligned crop)."""
    height, width = size
    wanted = {crop.start + k: (slot, k, box) for slot, crop in enumerate(plan.accepted)
              for k, box in enumerate(crop.boxes)}
    last = max(wanted) if wanted else -1
    with atomic_path(path) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                          shape=(len(plan.accepted), len(plan.accepted[0].boxes) if plan.accepted
                                                 else 0, height, width, 3))
        found = 0
        frames = iter_frames(video_path)
        try:
            for index, frame in enumerate(frames):
                if index in wanted:
                    slot, k, box = wanted[index]
                    array[slot, k] = crop(frame, box, size)
                    found += 1
                if index >= last:
                    break
        finally:
            frames.close()
        array.flush()
        del array
        if found != len(wanted):
            raise ValueError(f"{video_path}: the video has fewer frames than its landmarks ({found} of "
                             f"{len(wanted)} crop frames decoded)")
    return path


def cached_crops(video_path: Path, name: str, plan: ClipPlan, size: tuple[int, int], cache_dir: Path,
                 crop: CropFunction = crop_face) -> Path:
    """The crop file of one stored clip, written on first use."""
    path = Path(cache_dir) / f"{name}.{cache_key(Path(video_path), size, plan)}.npy"
    if not path.is_file():
        write_crops(Path(video_path), plan, size, path, crop)
    return path

