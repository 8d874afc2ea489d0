"""Preprocessing real files into the clip store, including every bad input the issue lists."""
import json
from pathlib import Path

import numpy as np
import pytest

import talkingface
from talkingface.data import ClipStore
from talkingface.data.layouts import parse_hdtf_annotations
from talkingface.data.preprocess import Segment, process_source
from talkingface.errors import DataError, MediaError
from talkingface.media import VideoWriter, probe_video, read_audio, read_frames
from test_media import set_display_rotation


SIZE = 224  # the face spans ~110 px: comfortably above dlib HOG's 80 px window


def face_image(size: int = SIZE) -> np.ndarray:
    """The astronaut's head from scikit-image, ``(size, size, 3)`` uint8."""
    from skimage.data import astronaut
    from skimage.transform import resize

    head = astronaut()[0:260, 100:360]
    return (resize(head, (size, size), anti_aliasing=True) * 255).astype(np.uint8)


def tone(seconds: float, rate: int = 16000, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels)


def face_video(path: Path, seconds: float = 2.0, fps: float = 25, audio_seconds: float | None = None,
               blank: tuple[float, float] | None = None, frame=None, audio: np.ndarray | None = None) -> Path:
    """A talking-head-like clip: the astronaut moving slightly, optional blank (faceless) stretch."""
    base = face_image() if frame is None else frame
    sound = tone(seconds if audio_seconds is None else audio_seconds) if audio is None else audio
    with VideoWriter(path, fps, audio=sound if sound.ndim == 1 else None, crf=20, preset="ultrafast") as writer:
        for i in range(int(round(seconds * fps))):
            t = i / fps
            image = np.roll(base, int(3 * np.sin(t * 2)), axis=1)
            if blank and blank[0] <= t < blank[1]:
                image = np.full_like(base, 128)
            writer.write(image)
    return path


def preprocess_config(tmp: Path, **preprocess) -> talkingface.Config:
    return talkingface.load_config(dataset="custom", config={
        "progress": False, "data": {"raw_dir": str(tmp / "raw"), "processed_dir": str(tmp / "processed")},
        "preprocess": {"workers": 1, **preprocess}})


def store_of(tmp: Path) -> ClipStore:
    return ClipStore(tmp / "processed" / "custom")


def assert_no_partial_output(store: ClipStore, name: str):
    clips = store.root / "clips"
    assert not (clips / name).exists()
    assert not [p for p in clips.glob(".*")] if clips.exists() else True


def process(tmp: Path, path: Path, name: str = "clip", **preprocess) -> Path:
    store = store_of(tmp)
    done = process_source(path, [Segment(name)], store, preprocess_config(tmp, **preprocess))
    assert done == [store.clip(name).root]
    return done[0]


def test_a_good_clip_has_every_file_aligned(tmp_path: Path):
    clip = process(tmp_path, face_video(tmp_path / "a.mp4", seconds=2.0))
    meta = json.loads((clip / "meta.json").read_text())
    assert meta["frames"] == 50 and meta["fps"] == 25.0 and meta["face_valid_fraction"] == 1.0
    assert np.load(clip / "landmarks.npy").shape == (50, 68, 2)
    assert np.load(clip / "face_valid.npy").all()
    assert np.load(clip / "features" / "mel.npy").shape == (50, 80, 16)
    assert len(read_audio(clip / "audio.wav")) == 32000
    assert probe_video(clip / "video.mp4").frame_count == 50
    landmarks = np.load(clip / "landmarks.npy")
    assert 0 < landmarks[..., 0].min() and landmarks[..., 0].max() < SIZE  # inside the frame


def test_corrupt_empty_and_silent_files_fail_cleanly(tmp_path: Path):
    good = face_video(tmp_path / "good.mp4")
    store = store_of(tmp_path)
    config = preprocess_config(tmp_path)
    (tmp_path / "corrupt.mp4").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 50)
    with VideoWriter(tmp_path / "silent.mp4", 25) as writer:
        for _ in range(10):
            writer.write(face_image())
    for name, error, message in (("corrupt", MediaError, "corrupt.mp4"), ("empty", MediaError, "empty.mp4: file is empty"),
                                 ("junk", MediaError, "junk.mp4"), ("silent", MediaError, "silent.mp4: no audio stream")):
        with pytest.raises(error, match=message):
            process_source(tmp_path / f"{name}.mp4", [Segment(name)], store, config)
        assert_no_partial_output(store, name)


def test_no_face_in_any_frame_is_an_error(tmp_path: Path):
    path = face_video(tmp_path / "noface.mp4", frame=np.full((SIZE, SIZE, 3), 90, np.uint8))
    with pytest.raises(DataError, match="no face found in any of 50 frames"):
        process(tmp_path, path)
    assert_no_partial_output(store_of(tmp_path), "clip")


def test_face_lost_for_three_seconds_is_marked_and_short_gaps_are_filled(tmp_path: Path):
    path = face_video(tmp_path / "lost.mp4", seconds=8.0, blank=(2.0, 5.0))
    clip = process(tmp_path, path)
    valid = np.load(clip / "face_valid.npy")
    landmarks = np.load(clip / "landmarks.npy")
    assert not valid[52:123].any() and valid[:48].all() and valid[128:].all()
    assert np.isnan(landmarks[~valid]).all()
    meta = json.loads((clip / "meta.json").read_text())
    assert any("no face" in event for event in meta["face_events"])
    short = process(tmp_path, face_video(tmp_path / "blink.mp4", seconds=3.0, blank=(1.0, 1.2)), name="blink")
    assert np.load(short / "face_valid.npy").all()  # a 5-frame gap is interpolated


def test_clip_with_too_few_face_frames_is_rejected(tmp_path: Path):
    path = face_video(tmp_path / "mostly_empty.mp4", seconds=4.0, blank=(1.0, 4.0))
    with pytest.raises(DataError, match="a face was found in only 25% of the frames"):
        process(tmp_path, path)
    assert_no_partial_output(store_of(tmp_path), "clip")


def test_two_faces_keep_the_main_one(tmp_path: Path):
    from skimage.transform import resize

    from talkingface.face import DlibBackend

    face = face_image()
    side = int(SIZE * 0.8)
    small = (resize(face, (side, side), anti_aliasing=True) * 255).astype(np.uint8)
    canvas = np.full((SIZE, 2 * SIZE, 3), 60, np.uint8)
    canvas[:, :SIZE] = face
    canvas[(SIZE - side) // 2:(SIZE - side) // 2 + side, SIZE + 20:SIZE + 20 + side] = small
    assert len(DlibBackend().detect(canvas)) == 2  # both faces are visible to the detector
    clip = process(tmp_path, face_video(tmp_path / "two.mp4", frame=canvas))
    landmarks = np.load(clip / "landmarks.npy")
    assert landmarks[..., 0].max() < SIZE + 5  # the larger face on the left, never the other one
    events = json.loads((clip / "meta.json").read_text())["face_events"]
    assert any("2 faces" in event for event in events)


@pytest.mark.parametrize("fps", [30.0, 24.0])
def test_other_frame_rates_become_25(tmp_path: Path, fps: float):
    clip = process(tmp_path, face_video(tmp_path / "v.mp4", seconds=2.0, fps=fps))
    meta = json.loads((clip / "meta.json").read_text())
    assert meta["frames"] == 50 and meta["source_fps"] == pytest.approx(fps)


def test_48k_stereo_audio_becomes_16k_mono(tmp_path: Path):
    import av

    path = face_video(tmp_path / "silent.mp4", audio=np.zeros((2, 10)))
    stereo = tmp_path / "stereo.mp4"
    with av.open(str(path)) as source, av.open(str(stereo), "w") as out:
        video_in = source.streams.video[0]
        video_out = out.add_stream_from_template(video_in)
        audio_out = out.add_stream("aac", rate=48000, layout="stereo")
        for packet in source.demux(video_in):
            if packet.dts is not None:
                packet.stream = video_out
                out.mux(packet)
        t = np.arange(96000) / 48000
        samples = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.4 * np.sin(2 * np.pi * 440 * t)]).astype(np.float32)
        for start in range(0, 96000, 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 1024]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            for packet in audio_out.encode(frame):
                out.mux(packet)
        for packet in audio_out.encode(None):
            out.mux(packet)
    clip = process(tmp_path, stereo)
    audio = read_audio(clip / "audio.wav")
    assert len(audio) == 32000
    spectrum = np.abs(np.fft.rfft(audio[4000:20000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) < 2
    import wave

    with wave.open(str(clip / "audio.wav")) as handle:
        assert (handle.getnchannels(), handle.getframerate()) == (1, 16000)


@pytest.mark.parametrize("audio_seconds, offset", [(4.0, 2.0), (0.5, -1.5)])
def test_audio_longer_or_shorter_than_video(tmp_path: Path, audio_seconds: float, offset: float):
    clip = process(tmp_path, face_video(tmp_path / "v.mp4", seconds=2.0, audio_seconds=audio_seconds))
    meta = json.loads((clip / "meta.json").read_text())
    assert meta["frames"] == 50
    assert meta["audio_offset_seconds"] == pytest.approx(offset, abs=0.1)  # AAC priming adds a few ms
    audio = read_audio(clip / "audio.wav")
    assert len(audio) == 32000
    if offset < 0:
        assert np.abs(audio[12000:]).max() == 0  # padded with silence, not stretched


def test_portrait_phone_video_is_rotated(tmp_path: Path):
    path = face_video(tmp_path / "phone.mp4", frame=np.ascontiguousarray(np.rot90(face_image()[:, 12:212], k=1)))
    set_display_rotation(path, 90)
    clip = process(tmp_path, path)
    meta = json.loads((clip / "meta.json").read_text())
    assert meta["rotation"] == 90 and (meta["width"], meta["height"]) == (200, SIZE)


def test_segments_and_hdtf_annotations(tmp_path: Path):
    (tmp_path / "WDA_annotion_time.txt").write_text("Talk.mp4 00:00-00:01 00:02-00:03.5\nOther.mp4 00:05-00:10\n")
    annotations = parse_hdtf_annotations(tmp_path / "WDA_annotion_time.txt")
    assert annotations == {"Talk": [(0.0, 1.0), (2.0, 3.5)], "Other": [(5.0, 10.0)]}
    (tmp_path / "bad_annotion_time.txt").write_text("Talk.mp4 00:05-00:02\n")
    with pytest.raises(DataError, match="bad_annotion_time.txt:1: range '00:05-00:02' ends before it starts"):
        parse_hdtf_annotations(tmp_path / "bad_annotion_time.txt")
    path = face_video(tmp_path / "Talk.mp4", seconds=4.0)
    store = store_of(tmp_path)
    done = process_source(path, [Segment("Talk_00", 0.0, 1.0), Segment("Talk_01", 2.0, 3.5)], store,
                          preprocess_config(tmp_path))
    assert [json.loads((c / "meta.json").read_text())["frames"] for c in done] == [25, 38]  # frames [0, 25) and [50, 88)
    first = read_frames(done[1] / "video.mp4")[0].astype(int)
    source = read_frames(path, fps=25)[50].astype(int)
    assert np.abs(first - source).mean() < 4  # segment 2 starts at frame 50 of the source


def write_openface_csv(path: Path, landmarks: np.ndarray, success: np.ndarray) -> None:
    """An OpenFace 2 FeatureExtraction CSV (headers with leading spaces, extra columns first)."""
    count = len(landmarks)
    columns = {"frame": np.arange(1, count + 1), " face_id": np.zeros(count), " timestamp": np.arange(count) / 25,
               " confidence": np.where(success, 0.98, 0.0), " success": success.astype(int),
               " gaze_0_x": np.zeros(count)}
    columns.update({f" x_{i}": landmarks[:, i, 0] for i in range(68)})
    columns.update({f" y_{i}": landmarks[:, i, 1] for i in range(68)})
    names = list(columns)
    rows = ["," .join(names)] + [",".join(f"{columns[n][t]:.3f}" for n in names) for t in range(count)]
    path.write_text("\n".join(rows) + "\n")


def test_openface_csv_landmarks_are_used_when_selected(tmp_path: Path):
    video = face_video(tmp_path / "talk.mp4", seconds=2.0)
    base = np.stack([np.linspace(40, 180, 68), np.linspace(50, 200, 68)], axis=1)
    landmarks = np.repeat(base[None], 50, axis=0) + np.arange(50)[:, None, None] * 0.5
    success = np.ones(50, bool)
    success[20:24] = False  # a short OpenFace failure: interpolated like a tracked gap
    write_openface_csv(tmp_path / "talk.csv", landmarks, success)
    clip = process(tmp_path, video, face_backend="openface")
    stored = np.load(clip / "landmarks.npy")
    assert np.load(clip / "face_valid.npy").all()
    np.testing.assert_allclose(stored, landmarks, atol=0.01)  # linear motion survives smoothing and filling
    write_openface_csv(tmp_path / "talk.csv", landmarks[:40], success[:40])
    with pytest.raises(DataError, match="the OpenFace CSV has 40 frames but the video has at least 50"):
        process(tmp_path, video, name="short", face_backend="openface")
    (tmp_path / "talk.csv").unlink()
    with pytest.raises(DataError, match="OpenFace landmarks for .*talk.mp4 not found"):
        process(tmp_path, video, name="none", face_backend="openface")
