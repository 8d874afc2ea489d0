from pathlib import Path

import numpy as np
import pytest

from talkingface.errors import MediaError
from talkingface.media import VideoWriter, probe_video, read_audio, read_frames, write_wav


def gradient_frames(count: int, h: int = 32, w: int = 48) -> np.ndarray:
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    return np.stack([np.broadcast_to(np.clip(base + 8 * t, 0, 255), (h, w, 3)) for t in range(count)]).astype(np.uint8)


def test_video_roundtrip_with_audio(tmp_path: Path):
    frames = gradient_frames(25)
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    with VideoWriter(tmp_path / "v.mp4", 25, audio=tone) as writer:
        for frame in frames:
            writer.write(frame)
    info = probe_video(tmp_path / "v.mp4")
    assert (info.fps, info.frame_count, info.width, info.height, info.has_audio) == (25.0, 25, 48, 32, True)
    decoded = read_frames(tmp_path / "v.mp4")
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 3  # crf 18 H.264
    audio = read_audio(tmp_path / "v.mp4")
    assert 16000 <= len(audio) <= 16000 + 2048  # AAC adds priming/padding samples
    spectrum = np.abs(np.fft.rfft(audio[2048:14336]))
    assert abs(np.argmax(spectrum) * 16000 / 12288 - 440) < 3


def test_odd_frame_sizes_are_padded(tmp_path: Path):
    with VideoWriter(tmp_path / "odd.mp4", 25) as writer:
        writer.write(np.zeros((31, 45, 3), np.uint8))
    info = probe_video(tmp_path / "odd.mp4")
    assert (info.width, info.height, info.has_audio) == (46, 32, False)


def test_writer_leaves_nothing_when_the_block_fails(tmp_path: Path):
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "x.mp4", 25) as writer:
            writer.write(np.zeros((8, 8, 3), np.uint8))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MediaError, match="no frames were written"):
        with VideoWriter(tmp_path / "empty.mp4", 25):
            pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MediaError, match=r"\(H, W, 3\) uint8"):
        with VideoWriter(tmp_path / "bad.mp4", 25) as writer:
            writer.write(np.zeros((8, 8), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_wav_roundtrip_and_resampling(tmp_path: Path):
    tone = 0.25 * np.sin(2 * np.pi * 300 * np.arange(48000) / 48000)
    write_wav(tmp_path / "a.wav", tone, 48000)
    audio = read_audio(tmp_path / "a.wav", 16000)
    assert abs(len(audio) - 16000) <= 32
    assert abs(audio.std() - 0.25 / np.sqrt(2)) < 0.01


def test_bad_files_name_the_file(tmp_path: Path):
    with pytest.raises(MediaError, match="missing.mp4: file not found"):
        read_frames(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match="empty.mp4: file is empty"):
        probe_video(tmp_path / "empty.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(MediaError, match="junk.mp4"):
        read_frames(tmp_path / "junk.mp4")
    with VideoWriter(tmp_path / "silent.mp4", 25) as writer:
        writer.write(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(MediaError, match="silent.mp4: no audio stream"):
        read_audio(tmp_path / "silent.mp4")
    write_wav(tmp_path / "a.wav", np.zeros(100))
    with pytest.raises(MediaError, match="a.wav: no video stream"):
        read_frames(tmp_path / "a.wav")
    with pytest.raises(MediaError, match=r"expected mono samples"):
        write_wav(tmp_path / "s.wav", np.zeros((2, 100)))
