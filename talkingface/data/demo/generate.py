"""Writing the demo clips: mp4 (H.264 + AAC) of the animated face speaking, with JSON ground truth."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...io_utils import atomic_write_json
from ...media import VideoWriter
from .animate import animate, mouth_opening
from .face import base_face
from .speech import synthesize_speech

FPS = 25
SAMPLE_RATE = 16000
SILENCE_S = 0.2  # before and after the sentence, so every clip starts and ends with a closed mouth

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things.",
    "We were away a year ago, far from home.",
    "She sells sea shells by the sea shore every morning.",
    "Open the window and let the warm air come in.",
    "My mother made a lovely lemon cake on Monday.",
    "How are you today? I hope the weather stays nice.",
    "Good evening, and welcome to the news at nine.",
    "Thirty bright birds sang above the quiet river.",
    "A talking face follows the rhythm of the voice.",
)
# eSpeak NG accents with its female variants (the demo face is a woman's).
VOICES = ("en-us+f3", "en+f2", "en-us+f4", "en-gb-x-rp+f1", "en-us-nyc+f5", "en-gb-scotland+f3")


@dataclass(frozen=True)
class DemoClipSpec:
    """What one demo clip says and how: an eSpeak NG voice, pitch (0-100) and rate (words/min)."""

    sentence: str
    voice: str
    pitch: int
    rate: int


def demo_clip_spec(index: int, seed: int = 0) -> DemoClipSpec:
    """The spec of clip ``index`` for ``seed``; independent of how many clips are made."""
    order = np.random.default_rng(seed).permutation(len(SENTENCES))
    rng = np.random.default_rng([seed, index])
    return DemoClipSpec(sentence=SENTENCES[order[index % len(SENTENCES)]],
                        voice=VOICES[(index + seed) % len(VOICES)],
                        pitch=int(rng.integers(40, 61)), rate=int(rng.integers(150, 176)))


def clip_audio(spec: DemoClipSpec) -> np.ndarray:
    """The clip's speech with silence around it, padded to whole video frames: ``(N,)`` float32."""
    speech = synthesize_speech(spec.sentence, spec.voice, rate=spec.rate, pitch=spec.pitch, sample_rate=SAMPLE_RATE)
    silence = np.zeros(int(SILENCE_S * SAMPLE_RATE), np.float32)
    audio = np.concatenate([silence, speech, silence])
    hop = SAMPLE_RATE // FPS
    return np.pad(audio, (0, math.ceil(len(audio) / hop) * hop - len(audio)))


def _is_complete(video: Path, truth: Path, seed: int, size: int) -> bool:
    if not (video.is_file() and truth.is_file()):
        return False
    try:
        meta = json.loads(truth.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("seed") == seed and meta.get("size") == size


def write_demo_clip(out_dir: str | Path, index: int, seed: int = 0, size: int = 256) -> Path:
    """Write ``demo_<index>.mp4`` and its ground truth ``demo_<index>.json``; return the mp4 path.

    The JSON is written last, so a clip with both files is complete and is left as it is.
    """
    out_dir = Path(out_dir)
    name = f"demo_{index:02d}"
    video, truth = out_dir / f"{name}.mp4", out_dir / f"{name}.json"
    if _is_complete(video, truth, seed, size):
        return video
    spec = demo_clip_spec(index, seed)
    audio = clip_audio(spec)
    openings = mouth_opening(audio, SAMPLE_RATE, FPS)
    landmarks = []
    with VideoWriter(video, FPS, audio=audio, sample_rate=SAMPLE_RATE) as writer:
        for frame, points in animate(base_face(size), openings, np.random.default_rng([seed, index, 1])):
            writer.write(frame)
            landmarks.append(np.round(points, 2).tolist())
    atomic_write_json(truth, {
        "name": name, "seed": seed, "size": size, "fps": FPS, "sample_rate": SAMPLE_RATE, **asdict(spec),
        "num_frames": len(openings), "mouth_opening": np.round(openings.astype(np.float64), 4).tolist(),
        "landmarks": landmarks,
    })
    return video


def write_demo_videos(out_dir: str | Path, seed: int = 0, num_clips: int = 8, size: int = 256) -> list[Path]:
    """Write ``num_clips`` demo clips (mp4 + JSON) into ``out_dir``, skipping finished ones.

    Returns the mp4 paths, ``out_dir/demo_00.mp4`` onwards.
    """
    return [write_demo_clip(out_dir, index, seed, size) for index in range(num_clips)]
