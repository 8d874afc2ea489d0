"""``example_shapes``: procedurally drawn faces whose mouth opening follows a synthetic voice."""
from __future__ import annotations

import numpy as np
from talkingface import register_dataset
from talkingface.data import ClipStore, DatasetLayout
from talkingface.io_utils import atomic_write_json, atomic_write_text
from talkingface.media import VideoWriter, write_wav

from .features import FPS, SAMPLE_RATE


def synthetic_voice(rng: np.random.Generator, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Voiced syllables separated by pauses; returns (audio (N,), per-sample envelope (N,))."""
    n = int(seconds * SAMPLE_RATE)
    audio = np.zeros(n, np.float32)
    envelope = np.zeros(n, np.float32)
    t = int(rng.uniform(0.05, 0.2) * SAMPLE_RATE)
    while t < n:
        length = int(rng.uniform(0.12, 0.35) * SAMPLE_RATE)
        end = min(t + length, n)
        pitch = rng.uniform(100, 220)
        time = np.arange(end - t) / SAMPLE_RATE
        env = np.sin(np.pi * np.linspace(0, 1, end - t)) ** 0.7 * rng.uniform(0.5, 1.0)
        tone = sum(np.sin(2 * np.pi * pitch * k * time) / k for k in range(1, 6))
        audio[t:end] = 0.25 * env * tone
        envelope[t:end] = env
        t = end + int(rng.uniform(0.05, 0.3) * SAMPLE_RATE)
    return audio, envelope


def draw_face(size: int, mouth_open: float, shift: tuple[float, float], tone: float) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 face; ``mouth_open`` in [0, 1] sets the mouth height."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx, cy = 0.5 + shift[0], 0.5 + shift[1]
    frame = np.empty((size, size, 3), np.float32)
    frame[:] = (0.25, 0.3, 0.4)
    head = ((x - cx) / 0.32) ** 2 + ((y - cy) / 0.42) ** 2 <= 1
    frame[head] = np.array((0.9, 0.72, 0.6)) * tone
    for ex in (cx - 0.12, cx + 0.12):
        frame[((x - ex) / 0.05) ** 2 + ((y - cy + 0.12) / 0.03) ** 2 <= 1] = (0.1, 0.1, 0.15)
    height = 0.015 + 0.09 * mouth_open
    mouth = ((x - cx) / 0.13) ** 2 + ((y - cy - 0.2) / height) ** 2 <= 1
    frame[mouth] = (0.45, 0.08, 0.1)
    return (np.clip(frame, 0, 1) * 255).astype(np.uint8)


@register_dataset("example_shapes")
class ExampleShapes(DatasetLayout):
    """Synthetic clips written through the same clip store as real datasets."""

    default_config = {"example_shapes": {"clips": 8, "seconds": 2.0, "size": 64, "val_clips": 1, "test_clips": 2}}

    def fingerprint(self) -> dict:
        return {**self.config["example_shapes"].to_dict(), "seed": self.config["seed"]}

    def build(self, store: ClipStore) -> None:
        opts = self.config["example_shapes"]
        names = [f"clip{i:03d}" for i in range(opts["clips"])]
        for index, name in enumerate(names):
            clip = store.clip(name)
            if clip.is_complete:
                continue
            rng = np.random.default_rng([int(self.config["seed"]), index])
            audio, envelope = synthetic_voice(rng, opts["seconds"])
            frames = int(opts["seconds"] * FPS)
            hop = SAMPLE_RATE // FPS
            mouth = envelope[: frames * hop].reshape(frames, hop).mean(axis=1)
            drift = np.cumsum(rng.normal(0, 0.004, size=(frames, 2)), axis=0)
            with VideoWriter(clip.video_path, FPS, audio=audio, sample_rate=SAMPLE_RATE) as writer:
                for t in range(frames):
                    writer.write(draw_face(opts["size"], float(mouth[t]), tuple(drift[t]), 0.9 + 0.1 * np.sin(t / 9)))
            write_wav(clip.audio_path, audio, SAMPLE_RATE)
            atomic_write_json(clip.meta_path, {"fps": FPS, "frames": frames, "size": opts["size"],
                                               "sample_rate": SAMPLE_RATE, "source": "synthetic"})
        test, val = opts["test_clips"], opts["val_clips"]
        splits = {"test": names[:test], "val": names[test:test + val], "train": names[test + val:]}
        for split, members in splits.items():
            atomic_write_text(store.root / "splits" / f"{split}.txt", "".join(f"{m}\n" for m in members))
