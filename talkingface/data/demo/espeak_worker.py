"""Speak one utterance with a freshly loaded libespeak-ng (stdlib only; run as a child process).

    python -I espeak_worker.py LIBRARY DATA_DIR VOICE RATE PITCH < text.utf8 > out.bin

Writes the native sample rate as a little-endian int32, then the int16 samples. Exits with status
2 and a message on stderr when the library or the voice cannot be used.
"""
from __future__ import annotations

import ctypes
import struct
import sys

# Values from eSpeak NG's speak_lib.h.
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000
RATE, PITCH = 1, 3
POS_CHARACTER = 1
CHARS_UTF8 = 1
EE_OK = 0

SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def load(library: str) -> ctypes.CDLL:
    """Load libespeak-ng and declare the signatures used here."""
    lib = ctypes.CDLL(library)
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    for name in ("espeak_Initialize", "espeak_SetVoiceByName", "espeak_SetParameter", "espeak_ng_SetRandSeed",
                 "espeak_Synth", "espeak_Synchronize"):
        getattr(lib, name).restype = ctypes.c_int
    return lib


def speak(lib: ctypes.CDLL, data_dir: str, text: str, voice: str, rate: int, pitch: int) -> tuple[int, bytes]:
    """``(native sample rate, int16 samples as bytes)`` of ``text``."""
    # Without DONT_EXIT the library calls exit() when its data is missing.
    sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_dir.encode(), INITIALIZE_DONT_EXIT)
    if sample_rate <= 0:
        raise RuntimeError(f"eSpeak NG failed to initialise with the voice data in {data_dir}")
    chunks: list[bytes] = []

    def collect(wav, count: int, events) -> int:
        if wav and count > 0:
            chunks.append(ctypes.string_at(wav, 2 * count))
        return 0

    callback = SynthCallback(collect)
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
        raise RuntimeError(f"eSpeak NG has no voice {voice!r} (try 'en-us', 'en', 'en-gb-x-rp', 'en-us+f3')")
    lib.espeak_SetParameter(RATE, rate, 0)
    lib.espeak_SetParameter(PITCH, pitch, 0)
    lib.espeak_ng_SetRandSeed(0)
    encoded = text.encode("utf-8")
    status = lib.espeak_Synth(encoded, len(encoded) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
    lib.espeak_Synchronize()
    if status != EE_OK:
        raise RuntimeError(f"eSpeak NG could not synthesize {text!r} (error {status})")
    return sample_rate, b"".join(chunks)


def main() -> int:
    library, data_dir, voice, rate, pitch = sys.argv[1:6]
    text = sys.stdin.buffer.read().decode("utf-8")
    try:
        sample_rate, samples = speak(load(library), data_dir, text, voice, int(rate), int(pitch))
    except (OSError, AttributeError, RuntimeError) as exc:
        print(exc, file=sys.stderr)
        return 2
    sys.stdout.buffer.write(struct.pack("<i", sample_rate) + samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
