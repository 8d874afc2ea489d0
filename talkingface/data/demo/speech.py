"""Real synthesized speech from eSpeak NG (the library and voice data ship in ``espeakng-loader``).

libespeak-ng keeps state between utterances that neither reseeding nor ``espeak_Terminate`` +
``espeak_Initialize`` resets (the same sentence comes out a few samples longer or shorter depending
on what was spoken before). Each utterance is therefore spoken by a short-lived child process that
loads the library afresh (``espeak_worker.py``, about 50 ms), which makes the audio a function of
the arguments alone and keeps the library's global state out of this process and its threads.
"""
from __future__ import annotations

import struct
import subprocess
import sys
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from ...errors import DataError

WORKER = Path(__file__).with_name("espeak_worker.py")


def espeak_paths() -> tuple[str, str]:
    """``(library, voice data folder)`` of the eSpeak NG shipped by ``espeakng-loader``."""
    try:
        import espeakng_loader
        library, data_dir = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    except (ImportError, RuntimeError) as exc:
        raise DataError(f"eSpeak NG is not available (install the package espeakng-loader): {exc}") from exc
    if not Path(library).is_file():
        raise DataError(f"eSpeak NG is not available: {library} is missing")
    return library, data_dir


def speak_native(text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50) -> tuple[np.ndarray, int]:
    """``(samples, sample_rate)``: ``(N,)`` int16 at eSpeak NG's own rate (22050 Hz)."""
    library, data_dir = espeak_paths()
    command = [sys.executable, "-I", str(WORKER), library, data_dir, voice, str(int(rate)), str(int(pitch))]
    result = subprocess.run(command, input=text.encode("utf-8"), capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DataError(message[-1] if message else f"eSpeak NG failed (exit status {result.returncode})")
    (sample_rate,) = struct.unpack("<i", result.stdout[:4])
    return np.frombuffer(result.stdout[4:], dtype="<i2"), sample_rate


def synthesize_speech(text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50,
                      sample_rate: int = 16000) -> np.ndarray:
    """Speak ``text`` with eSpeak NG; returns ``(N,)`` float32 mono in [-1, 1] at ``sample_rate``.

    ``voice`` is an eSpeak NG voice name, optionally with a variant (``"en-us+f3"``); ``rate`` is in
    words per minute (80-450) and ``pitch`` in 0-100. The same arguments give the same samples.
    """
    native, native_rate = speak_native(text, voice, rate, pitch)
    if len(native) == 0:
        raise DataError(f"eSpeak NG produced no audio for {text!r}")
    divisor = gcd(sample_rate, native_rate)
    audio = resample_poly(native.astype(np.float32) / 32768.0, sample_rate // divisor, native_rate // divisor)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)
