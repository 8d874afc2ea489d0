"""The offline demo dataset: real eSpeak NG speech, the astronaut face, energy-driven mouth animation,
and the written mp4 + JSON clips (decodable, resumable, deterministic)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import find_peaks, welch

from talkingface.data.demo import (MouthAnimator, base_face, demo_clip_spec, detect_landmarks, mouth_opening,
                                   synthesize_speech, write_demo_videos)
from talkingface.data.demo.generate import clip_audio
from talkingface.errors import DataError
from talkingface.media import probe_video, read_audio, read_frames

SENTENCE = "Please call Stella and ask her to bring these things with her from the store."


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    write_demo_videos(folder, seed=0, num_clips=2)
    return folder


def frame_rms(audio: np.ndarray, hop: int = 640) -> np.ndarray:
    frames = np.pad(audio, (0, -len(audio) % hop)).reshape(-1, hop)
    return np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))


def fundamental_hz(audio: np.ndarray, sample_rate: int = 16000) -> float:
    """Median autocorrelation pitch (50-400 Hz) of the loudest 40 ms windows."""
    windows = np.pad(audio, (0, -len(audio) % 640)).reshape(-1, 640)
    loud = windows[np.argsort((windows ** 2).sum(axis=1))[-10:]]
    pitches = []
    for window in loud:
        window = window - window.mean()
        correlation = np.correlate(window, window, "full")[len(window) - 1:]
        low, high = sample_rate // 400, sample_rate // 50
        pitches.append(sample_rate / (low + np.argmax(correlation[low:high])))
    return float(np.median(pitches))


def test_speech_is_real_speech():
    short = synthesize_speech("Hello there.")
    long = synthesize_speech(SENTENCE)
    assert short.dtype == np.float32 and long.ndim == 1
    assert np.abs(long).max() <= 1.0
    assert np.sqrt(np.mean(long ** 2)) > 0.02
    assert 2.0 < len(long) / 16000 < 8.0
    assert len(long) > 2.5 * len(short)
    frequencies, power = welch(long, fs=16000, nperseg=1024)
    assert power[(frequencies >= 100) & (frequencies <= 4000)].sum() > 0.8 * power.sum()
    peaks, _ = find_peaks(mouth_opening(long), height=0.25, prominence=0.2)
    assert len(peaks) >= 6  # about one per stressed syllable


def test_voices_and_pitch_differ():
    american = synthesize_speech(SENTENCE, voice="en-us")
    british = synthesize_speech(SENTENCE, voice="en-gb-x-rp")
    assert len(american) != len(british) or np.abs(american - british).max() > 0.1
    low, high = (synthesize_speech(SENTENCE, pitch=pitch) for pitch in (20, 80))
    assert fundamental_hz(high) > 1.2 * fundamental_hz(low)
    assert np.array_equal(synthesize_speech("Hello there."), synthesize_speech("Hello there."))


def test_speech_errors_are_data_errors(monkeypatch, tmp_path: Path):
    with pytest.raises(DataError, match="no voice 'no-such-voice'"):
        synthesize_speech("Hello.", voice="no-such-voice")
    import espeakng_loader
    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: "/nonexistent/libespeak-ng.so")
    with pytest.raises(DataError, match="eSpeak NG is not available"):
        synthesize_speech("Hello.")
    broken = tmp_path / "libespeak-ng.so"
    broken.write_text("not a shared library")
    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: str(broken))
    with pytest.raises(DataError, match="libespeak-ng.so"):
        synthesize_speech("Hello.")


def test_astronaut_landmarks_are_found():
    for size in (256, 160):
        face = base_face(size)
        assert face.image.shape == (size, size, 3) and face.image.dtype == np.uint8
        marks = face.landmarks
        assert marks.shape == (68, 2) and (marks > 0).all() and (marks < size).all()
        eyes, nose, mouth, chin = marks[36:48, 1].mean(), marks[30, 1], marks[48:68, 1].mean(), marks[8, 1]
        assert eyes < nose < mouth < chin
        assert 0.35 < (marks[16, 0] - marks[0, 0]) / size < 0.6  # head-and-shoulders framing
        redetected = detect_landmarks(face.image)
        assert np.linalg.norm(redetected - marks, axis=1).mean() < 0.015 * size


def test_mouth_opens_only_in_the_lower_face():
    face = base_face(256)
    animator = MouthAnimator(face)
    x0, y0, x1, y1 = animator.box
    closed = animator.render(0.0)
    assert np.abs(closed - face.image).max() < 1e-3
    assert np.abs(animator.render(1e-4) - face.image).max() < 1.0
    assert (np.sign(animator.triangle_areas(1.0)) == np.sign(animator.triangle_areas(0.0))).all()  # no folds

    opened = animator.render(1.0)
    outside = np.ones(opened.shape[:2], bool)
    outside[y0:y1 + 1, x0:x1 + 1] = False
    assert np.array_equal(opened[outside], closed[outside])
    lips = animator.displaced_landmarks(1.0)
    mouth = (slice(int(lips[62, 1]) + 2, int(lips[66, 1]) - 1), slice(int(lips[61, 0]), int(lips[63, 0]) + 1))
    assert opened[mouth].mean() < closed[mouth].mean() - 60
    measured_closed = detect_landmarks(closed.astype(np.uint8))
    measured_open = detect_landmarks(opened.astype(np.uint8))
    gap_change = (measured_open[66, 1] - measured_open[62, 1]) - (measured_closed[66, 1] - measured_closed[62, 1])
    assert gap_change > 10
    # The lips do the talking: the chin (outside DINet's mouth mask) moves by a fraction of the lip gap, so
    # a model cannot read the opening off it (docs/dinet_demo.md).
    assert 0 <= measured_open[8, 1] - measured_closed[8, 1] < gap_change / 3


def test_opening_follows_the_audio_energy():
    audio = clip_audio(demo_clip_spec(3, seed=0))
    opening = mouth_opening(audio)
    assert len(audio) % 640 == 0 and len(opening) == len(audio) // 640
    assert opening.min() == 0.0 and opening.max() == 1.0
    assert np.corrcoef(opening, frame_rms(audio))[0, 1] > 0.9
    assert opening[:3].max() < 0.05 and opening[-3:].max() < 0.05  # silence around the sentence


def test_written_clips_are_decodable_with_audio(demo_dir: Path):
    videos = sorted(demo_dir.glob("*.mp4"))
    assert [v.name for v in videos] == ["demo_00.mp4", "demo_01.mp4"]
    for video in videos:
        truth = json.loads(video.with_suffix(".json").read_text())
        frames = truth["num_frames"]
        assert truth["sentence"] and truth["voice"] and 50 <= frames <= 110  # 2-4 s of speech
        assert len(truth["mouth_opening"]) == frames and np.shape(truth["landmarks"]) == (frames, 68, 2)
        info = probe_video(video)
        assert (info.fps, info.frame_count, info.width, info.height, info.has_audio) == (25.0, frames, 256, 256, True)
        assert len(read_frames(video)) == frames
        audio = read_audio(video)
        assert frames * 640 <= len(audio) <= frames * 640 + 2048  # AAC priming/padding
        spoken = clip_audio(demo_clip_spec(int(video.stem[-2:]), seed=0))
        assert np.corrcoef(frame_rms(audio[:len(spoken)]), frame_rms(spoken))[0, 1] > 0.9


def test_detected_landmarks_follow_the_animation(demo_dir: Path):
    frames = read_frames(demo_dir / "demo_00.mp4")
    truth = json.loads((demo_dir / "demo_00.json").read_text())
    detected = [detect_landmarks(frame) for frame in frames]
    assert all(marks is not None for marks in detected)
    detected = np.stack(detected)
    expected = np.asarray(truth["landmarks"])
    assert np.linalg.norm(detected - expected, axis=2).mean() < 4.0
    lip_gap = np.linalg.norm(detected[:, 66] - detected[:, 62], axis=1)
    assert np.corrcoef(lip_gap, truth["mouth_opening"])[0, 1] > 0.6
    # The head really moves: the nose tip wanders by more than a pixel.
    assert np.ptp(expected[:, 30], axis=0).max() > 2.0


def test_writing_is_resumable_and_deterministic(demo_dir: Path, tmp_path: Path):
    stamps = {path.name: path.stat().st_mtime_ns for path in demo_dir.iterdir()}
    write_demo_videos(demo_dir, seed=0, num_clips=2)
    assert {path.name: path.stat().st_mtime_ns for path in demo_dir.iterdir()} == stamps

    fresh = write_demo_videos(tmp_path, seed=0, num_clips=2)
    for video in fresh:
        original = demo_dir / video.name
        assert video.with_suffix(".json").read_bytes() == original.with_suffix(".json").read_bytes()
        assert np.array_equal(read_frames(video), read_frames(original))

    (tmp_path / "demo_01.json").unlink()  # as if interrupted between the video and its ground truth
    write_demo_videos(tmp_path, seed=0, num_clips=2)
    assert (tmp_path / "demo_01.json").read_bytes() == (demo_dir / "demo_01.json").read_bytes()
    other_seed = write_demo_videos(tmp_path / "seed1", seed=1, num_clips=1)[0].with_suffix(".json")
    first = json.loads((demo_dir / "demo_00.json").read_text())
    assert json.loads(other_seed.read_text())["landmarks"] != first["landmarks"]
