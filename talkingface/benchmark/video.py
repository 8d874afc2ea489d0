"""The benchmark's input: a synthetic talking head of any size (scikit-image's astronaut, a real face photo,
swaying a few pixels at 25 fps) with a modulated tone as its audio, written once per size and length."""
from __future__ import annotations

from pathlib import Path

import numpy as np

FPS = 25
SAMPLE_RATE = 16000
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080), "480p": (854, 480), "360p": (640, 360)}


def parse_size(text: str) -> tuple[int, int]:
    """``720p``, ``1080p``, ... or ``WxH`` -> (width, height), both even (H.264)."""
    from ..errors import ConfigError

    key = str(text).strip().lower()
    if key in SIZES:
        return SIZES[key]
    try:
        width, height = (int(v) for v in key.split("x"))
    except ValueError:
        raise ConfigError(f"--size must be one of {', '.join(SIZES)} or WxH, got {text!r}") from None
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise ConfigError(f"--size {text}: width and height must be even and at least 64")
    return width, height


def head_frame(width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8: the astronaut scaled to fill the frame (her face about 0.45 of the height),
    cropped from the top, centred across."""
    from skimage.data import astronaut
    from skimage.transform import resize

    image = astronaut()  # 512 x 512, the face in the upper middle
    side = max(width, int(round(height * 16 / 9)))  # 720p: 1280, the face ~320 px high
    big = resize(image, (side, side), order=1, anti_aliasing=side < 512)
    left = (side - width) // 2
    return np.ascontiguousarray((big[:height, left:left + width] * 255).astype(np.uint8))


def tone(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A 220 Hz tone, amplitude-modulated at 3 Hz (a syllable rate)."""
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def talking_head_video(path: Path, size: tuple[int, int], seconds: float) -> Path:
    """``path`` (reused when it exists): ``seconds`` of the head at ``size`` = (width, height), 25 fps, with the
    tone; written atomically by ``talkingface.media.VideoWriter``."""
    from ..media import VideoWriter

    if path.is_file():
        return path
    width, height = size
    base = head_frame(width, height)
    sway = max(width // 400, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, FPS, audio=tone(seconds), crf=20, preset="ultrafast") as writer:
        for i in range(max(int(round(seconds * FPS)), 1)):
            writer.write(np.roll(base, int(sway * np.sin(i / FPS * 2)), axis=1))
    return path
