import hashlib
from pathlib import Path

import numpy as np
import pytest

from talkingface.errors import MediaError
from talkingface.media import VideoWriter, probe_video, read_audio, read_frames, write_wav
from talkingface.media import video as video_module


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


def test_a_closed_writer_holds_no_encoder_threads(tmp_path: Path):
    """The AAC encoder's resampler (a filter graph with worker threads) goes when the writer closes, even while the
    writer object lives on in a reference cycle: a process forked later (a DataLoader worker, a multiprocessing
    Manager) must not inherit it as garbage, whose collection in the child waits forever on threads that are not
    there (a CI hang in test_trainer, traced with gdb to ``avfilter_graph_free``)."""
    import gc

    def holds_encoder(root: object, depth: int = 6) -> bool:
        """Whether PyAV's encoder objects (stream, codec context, resampler, graph) are reachable from ``root``."""
        seen, layer = {id(root)}, [root]
        for _ in range(depth):
            nxt = []
            for obj in layer:
                for ref in gc.get_referents(obj):
                    if type(ref).__module__.startswith("av.") or type(ref).__name__ in ("Graph", "AudioResampler"):
                        return True
                    if id(ref) not in seen and not isinstance(ref, (type, str, bytes, int, float)):
                        seen.add(id(ref))
                        nxt.append(ref)
            layer = nxt
        return False

    with VideoWriter(tmp_path / "a.mp4", 25, audio=np.zeros(16000, np.float32)) as writer:
        for _ in range(3):
            writer.write(np.zeros((16, 16, 3), np.uint8))
        assert holds_encoder(writer)  # not vacuous: the open writer reaches its streams and the AAC resampler
    kept = [writer]  # a closed writer kept alive in a cycle (what a closure or a traceback would do)
    kept.append(kept)
    assert not holds_encoder(kept)
    kept.clear()


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


def write_numbered(path: Path, fps: float, count: int, size=(16, 16)) -> Path:
    """Frame i is flat grey 8*i (decodable back to i)."""
    with VideoWriter(path, fps, crf=0, preset="ultrafast") as writer:
        for i in range(count):
            writer.write(np.full((*size, 3), 8 * i, np.uint8))
    return path


def frame_numbers(frames: np.ndarray) -> list[int]:
    return [int(round(f.mean() / 8)) for f in frames]


def test_30fps_is_resampled_to_25_like_ffmpeg(tmp_path: Path):
    path = write_numbered(tmp_path / "v30.mp4", 30, 30)
    assert frame_numbers(read_frames(path)) == list(range(30))
    # ffmpeg -r 25 (fps filter, round=near) drops input frames 3, 9, 15, 21 and 27.
    assert frame_numbers(read_frames(path, fps=25)) == [0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19,
                                                        20, 22, 23, 24, 25, 26, 28, 29]


def test_lower_rates_duplicate_frames(tmp_path: Path):
    path = write_numbered(tmp_path / "v10.mp4", 10, 10)
    # Input frame j lands on output round_half_up(2.5 j) = 0, 3, 5, 8, 10, 13, ...; each is held until the next.
    assert frame_numbers(read_frames(path, fps=25)) == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 5, 5, 6, 6, 6, 7, 7,
                                                        8, 8, 8, 9, 9]


def test_variable_frame_rate_follows_timestamps(tmp_path: Path):
    import av
    from fractions import Fraction

    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1000)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": "0"}
        for i, ms in enumerate([0, 40, 60, 200, 240, 280]):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 8 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    numbers = frame_numbers(read_frames(path, fps=25))
    # t*25 rounded: 0, 1, 1.5->2, 5, 6, 7: frame 2 is held over the gap until frame 3 at 0.2 s.
    assert numbers[:8] == [0, 1, 2, 2, 2, 3, 4, 5]


def set_display_rotation(path: Path, clockwise: int) -> None:
    """Patch the display matrix in the mp4 track header, as phones record portrait video."""
    import struct

    data = bytearray(path.read_bytes())
    a, b, c, d = {90: (0, 1, -1, 0), 180: (-1, 0, 0, -1), 270: (0, -1, 1, 0)}[clockwise]
    pos = data.find(b"tkhd")
    offset = pos + 8 + (20 if data[pos + 4] == 0 else 32) + 16
    fixed = [v * 65536 & 0xFFFFFFFF for v in (a, b)] + [0] + [v * 65536 & 0xFFFFFFFF for v in (c, d)]
    struct.pack_into(">9I", data, offset, *fixed, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("clockwise", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path: Path, clockwise: int):
    image = np.zeros((16, 32, 3), np.uint8)
    image[:, :8] = 255  # a white band on the left of the stored (landscape) frame
    path = tmp_path / f"r{clockwise}.mp4"
    with VideoWriter(path, 25, crf=0, preset="ultrafast") as writer:
        writer.write(image)
    set_display_rotation(path, clockwise)
    info = probe_video(path)
    frame = read_frames(path)[0].mean(axis=2)
    assert info.rotation == clockwise
    if clockwise == 180:
        assert (info.width, info.height) == (32, 16) and frame[:, -8:].mean() > 200 and frame[:, :8].mean() < 50
    else:
        assert (info.width, info.height) == (16, 32)
        band = frame[:8] if clockwise == 90 else frame[-8:]  # left edge turned to the top (90) or bottom (270)
        assert band.mean() > 200 and frame[8:-8].mean() < 50


@pytest.mark.numerics
def test_the_same_frames_always_encode_to_the_same_video(tmp_path, monkeypatch):
    """x264's AVX-512 kernels gave 4 different videos in 8 encodes of these frames; the writer keeps
    x264 on AVX2 kernels where the CPU has AVX-512 (docs/testing.md)."""
    frames = np.random.default_rng(0).integers(0, 256, (20, 104, 80, 3), dtype=np.uint8)

    def distinct_videos(count: int) -> int:
        digests = set()
        for i in range(count):
            with VideoWriter(tmp_path / f"{i}.mp4", 25) as writer:
                for frame in frames:
                    writer.write(frame)
            digests.add(hashlib.sha256(read_frames(tmp_path / f"{i}.mp4").tobytes()).hexdigest())
        return len(digests)

    assert distinct_videos(6) == 1
    monkeypatch.setattr(video_module, "_cpu_has_avx512", lambda: True)
    assert video_module.x264_options(18, "medium")["x264-params"] == "asm=avx2"
    monkeypatch.setattr(video_module, "_cpu_has_avx512", lambda: False)
    assert video_module.x264_options(18, "medium") == {"crf": "18", "preset": "medium"}
