"""Landmarks precomputed by OpenFace 2 ``FeatureExtraction`` (CSV files, the format DINet's data uses)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..registry import register_face_backend
from .base import Box, FaceBackend
from .tracking import FaceTrack, frames_label, runs

LANDMARK_COLUMNS = [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
REQUIRED_COLUMNS = ["frame", "success", "confidence", *LANDMARK_COLUMNS]


def _read_table(path: Path) -> np.ndarray:
    """``(T, 139) float64``: the required columns, in ``REQUIRED_COLUMNS`` order, of every data row."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file, expected an OpenFace 2 CSV header")
        columns = {name.strip(): index for index, name in enumerate(header)}  # OpenFace pads names with spaces
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DataError(f"{path}: not an OpenFace 2 landmark CSV, missing columns {', '.join(missing[:5])}{more}")
        order = [columns[name] for name in REQUIRED_COLUMNS]
        rows = []
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            try:
                rows.append([float(row[index]) for index in order])
            except (ValueError, IndexError) as exc:
                raise DataError(f"{path}, line {line}: unreadable row ({exc})") from exc
    if not rows:
        raise DataError(f"{path}: no frames after the header")
    return np.array(rows, dtype=np.float64)


def _check_numbering(path: Path, frames: np.ndarray) -> None:
    """Frames must be numbered 1, 2, ..., N: a gap, duplicate or reordering means rows were lost or mixed."""
    expected = np.arange(1, len(frames) + 1)
    wrong = np.flatnonzero(frames != expected)
    if not wrong.size:
        return
    row = int(wrong[0])
    found, wanted = frames[row], int(expected[row])
    if row > 0 and found == frames[row - 1]:
        raise DataError(f"{path}: frame {found:g} appears twice (data rows {row} and {row + 1})")
    if found > wanted:
        gap = f"frame {wanted} is" if found == wanted + 1 else f"frames {wanted}-{found - 1:g} are"
        raise DataError(f"{path}: {gap} missing (frame numbers jump from {wanted - 1} to {found:g})")
    raise DataError(f"{path}: frame {found:g} in data row {row + 1}, expected frame {wanted}")


def read_openface_csv(path: str | Path, num_frames: int | None = None, min_confidence: float = 0.0) -> FaceTrack:
    """The 68 landmarks of an OpenFace 2 CSV as a ``FaceTrack`` (no gap filling or smoothing).

    Columns are found by name. Frame numbers must run 1..N without gaps or repeats, and N must equal
    ``num_frames`` when given (the video's frame count). Rows with ``success`` 0 or ``confidence``
    below ``min_confidence`` are invalid (their landmarks NaN). Event frame numbers are 0-based.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: OpenFace CSV not found")
    table = _read_table(path)
    _check_numbering(path, table[:, 0])
    if num_frames is not None and len(table) != num_frames:
        raise DataError(f"{path}: {len(table)} frames, but the video has {num_frames}")
    valid = (table[:, 1] != 0) & (table[:, 2] >= min_confidence)
    landmarks = np.stack([table[:, 3:71], table[:, 71:139]], axis=-1)
    events = [f"{frames_label(start, stop - 1)}: OpenFace found no face (success 0 or confidence below "
              f"{min_confidence:g})" for start, stop in runs(~valid)]
    return FaceTrack.from_landmarks(landmarks, valid, events)


_PER_FRAME_MESSAGE = ("the openface face backend cannot run on single frames: its landmarks come from OpenFace 2 "
                      "FeatureExtraction CSV files, one per video, read with talkingface.face.read_openface_csv "
                      "(see docs/faces.md)")


@register_face_backend("openface")
class OpenFaceBackend(FaceBackend):
    """Selects OpenFace 2 CSV landmarks by name; the pipeline reads them with ``read_openface_csv``.

    Options: ``csv_dir`` (default: beside each video) holds ``<video stem>.csv`` made by
    ``FeatureExtraction -f <video at 25 fps> -2Dfp``; ``min_confidence`` marks weaker rows missing.
    """

    default_config = {"openface": {"csv_dir": None, "min_confidence": 0.0}}

    def csv_for(self, video: Path) -> Path:
        """The CSV holding the landmarks of ``video``."""
        folder = Path(self.options["csv_dir"]) if self.options["csv_dir"] else video.parent
        path = folder / f"{video.stem}.csv"
        if not path.is_file():
            raise DataError(f"OpenFace landmarks for {video} not found: expected {path} "
                            "(FeatureExtraction -f <video at 25 fps> -2Dfp)")
        return path

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Always raises ``DataError``: OpenFace landmarks are read from CSV files, not computed per frame."""
        raise DataError(_PER_FRAME_MESSAGE)

    def landmarks(self, frame: np.ndarray, box: Box) -> np.ndarray:
        """Always raises ``DataError``: OpenFace landmarks are read from CSV files, not computed per frame."""
        raise DataError(_PER_FRAME_MESSAGE)
