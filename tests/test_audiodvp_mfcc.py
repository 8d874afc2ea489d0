"""The ``audiodvp_mfcc`` audio feature against python_speech_features called as AudioDVP's ATVGnet script does.

``official_windows`` is ``vendor/ATVGnet/code/test.py`` of xinwen-cs/AudioDVP with only the network call removed:
``librosa.load`` -> 1920 zeros inserted before and appended after -> ``python_speech_features.mfcc(speech, 16000,
winstep=0.01)`` -> for ``ind`` from 3 while ``ind <= int(T / 4) - 4``: ``mfcc[(ind - 3) * 4:(ind + 4) * 4, 1:]`` as a
``torch.FloatTensor`` (float32 here). Ours must equal it to ``rtol = atol = 1e-6`` (as the other MFCC tests) on
every frame the script yields (measured: 1.3e-6 of the tolerance); a window one row late, c0 kept in place of c12 or
the padding left out, planted into ``AudioDvpMfcc``, miss it by 3.5e7x to 8.4e7x.
"""
from __future__ import annotations

import numpy as np
import pytest
import python_speech_features

from breaks import mutated
from talkingface.audio import extract_features, mfcc
from talkingface.audio.features import AudioDvpMfcc
from talkingface.audio.vectors import feature_width
from talkingface.errors import AudioError
from talkingface.registry import AUDIO_FEATURES

SR = 16000
RTOL = ATOL = 1e-6


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """float32 in [-1, 1] as ``librosa.load`` returns it: voiced syllables (a 90-220 Hz glide with harmonics shaped
    by two moving formants, 4 syllables per second), a fricative-like noise burst, a stretch of digital silence and
    a low noise floor elsewhere."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    pitch = 90 + 130 * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    formant1 = 500 + 300 * np.sin(2 * np.pi * 1.3 * t)
    formant2 = 1500 + 700 * np.sin(2 * np.pi * 0.9 * t + 1)
    voiced = np.zeros_like(t)
    for k in range(1, 30):
        frequency = k * pitch
        gain = np.exp(-((frequency - formant1) / 150) ** 2) + 0.5 * np.exp(-((frequency - formant2) / 250) ** 2)
        voiced += np.where(frequency < SR / 2, gain, 0.0) * np.sin(k * phase)
    syllables = np.clip(np.sin(2 * np.pi * 2 * t), 0, None) ** 0.7
    signal = 0.25 * voiced * syllables + 0.003 * rng.standard_normal(len(t))
    burst = slice(int(0.4 * len(t)), int(0.46 * len(t)))
    signal[burst] += 0.08 * rng.standard_normal(burst.stop - burst.start)
    signal[int(0.56 * len(t)):int(0.63 * len(t))] = 0.0  # a pause with digital silence
    return np.clip(signal, -1, 1).astype(np.float32)


def official_windows(speech: np.ndarray) -> np.ndarray:
    """ATVGnet's ``test.py`` (AudioDVP), the lines before ``encoder(input_mfcc)``, literally."""
    speech = np.insert(speech, 0, np.zeros(1920))
    speech = np.append(speech, np.zeros(1920))
    mfcc = python_speech_features.mfcc(speech, 16000, winstep=0.01)

    ind = 3
    input_mfcc = []
    while ind <= int(mfcc.shape[0] / 4) - 4:
        t_mfcc = mfcc[(ind - 3) * 4: (ind + 4) * 4, 1:]
        input_mfcc.append(np.asarray(t_mfcc, np.float32))  # torch.FloatTensor(t_mfcc)
        ind += 1
    return np.stack(input_mfcc, axis=0)


def excess(ours: np.ndarray, official: np.ndarray) -> float:
    """max |ours - official| in units of ``assert_allclose``'s tolerance ``atol + rtol |official|`` (<= 1 passes)."""
    return float((np.abs(ours.astype(np.float64) - official) / (ATOL + RTOL * np.abs(official))).max())


def ours_for(wav: np.ndarray, frames: int, fps: float = 25.0) -> np.ndarray:
    return extract_features(["audiodvp_mfcc"], wav, num_frames=frames, fps=fps)["audiodvp_mfcc"]


@pytest.mark.numerics
@pytest.mark.parametrize("samples, yielded", [(36960, 57), (36140, 56)])  # 58 and 56 frames of audio
def test_audiodvp_mfcc_equals_the_official_script(samples: int, yielded: int):
    """The script yields K = int(T / 4) - 6 windows, T = 1 + ceil((N + 3440) / 160) rows: the frames whose 28 rows
    all exist. The audio covers ``round(N / 640)`` frames, K or K + 1 of them."""
    wav = speechlike(samples / SR)
    official = official_windows(wav)
    count = round(len(wav) * 25 / SR)
    assert len(official) == yielded and count in (yielded, yielded + 1)
    ours = ours_for(wav, count)
    assert ours.shape == (count, 28, 12) and ours.dtype == np.float32
    assert excess(ours[:len(official)], official) <= 1.0  # measured 1.3e-6: float32 of float64s equal to ~1e-12
    # the frame the script does not yield: the last 28 rows (its window moved back to end with the padded audio)
    rows = python_speech_features.mfcc(np.concatenate([np.zeros(1920), wav, np.zeros(1920)]), SR, winstep=0.01)
    if count > len(official):
        assert excess(ours[len(official):], rows[None, -28:, 1:]) <= 1.0


@pytest.mark.numerics
def test_audiodvp_mfcc_breaks_miss_the_official_script(monkeypatch):
    """Deliberate breaks planted into ``AudioDvpMfcc.frame_features`` (rule 5): each misses the tolerance by far."""
    wav = speechlike(2.31)
    official = official_windows(wav)
    assert excess(ours_for(wav, len(official)), official) <= 1.0
    breaks = {
        "window one row late": ("/ fps + 0.5)", "/ fps + 1.5)"),
        "c0 kept, c12 dropped": ("[:, 1:]", "[:, :12]"),
        "no zero padding": ("np.concatenate([pad, wav, pad])", "wav"),
    }
    misses = {}
    for what, (old, new) in breaks.items():
        with monkeypatch.context() as patch:
            mutated(patch, AudioDvpMfcc, "frame_features", old, new)
            misses[what] = excess(ours_for(wav, len(official)), official)
    assert min(misses.values()) > 1e5, misses  # measured 3.5e7 (one row late) to 8.4e7 (no padding)


def test_audiodvp_mfcc_is_registered_with_its_shape():
    assert AUDIO_FEATURES.get("audiodvp_mfcc") is AudioDvpMfcc
    feature = AudioDvpMfcc()
    assert feature.frame_shape() == (28, 12) and feature.time_axis == 0
    assert feature_width("audiodvp_mfcc", (28, 12)) == 12  # 336 > 256: averaged over the 28 rows by default
    features = ours_for(speechlike(1.0), 40)  # 25 frames of audio, 15 more repeat the last
    assert features.shape == (40, 28, 12) and features.dtype == np.float32
    assert np.array_equal(features[25:], np.repeat(features[24:25], 15, axis=0))


def test_audiodvp_mfcc_reads_float_and_int16_waveforms_alike():
    """int16 input is divided by 32768 first (``as_waveform``). c1..c12 do not depend on the signal's scale anyway (a
    gain adds a constant to every log filterbank energy, which the DCT puts into c0 alone): SyncNet's int16 scale
    would give the same windows (bit for bit for a power-of-two gain); only c0, which AudioDVP drops, would change."""
    wav = speechlike(1.0)
    as_int16 = np.round(wav * 32767).astype(np.int16)
    assert np.array_equal(ours_for(as_int16, 25), ours_for(as_int16.astype(np.float64) / 32768, 25))
    assert np.array_equal(ours_for(wav, 25), ours_for(wav.astype(np.float64) * 32768, 25))


@pytest.mark.numerics
def test_audiodvp_mfcc_rows_at_30_fps_start_at_the_rounded_frame_time():
    wav = speechlike(1.0)
    rows = mfcc(np.concatenate([np.zeros(1920), wav, np.zeros(1920)]), SR, winstep=0.01)[:, 1:].astype(np.float32)
    features = ours_for(wav, 30, fps=30)
    for frame, start in [(0, 0), (1, 3), (2, 7), (3, 10), (4, 13), (28, 93)]:
        np.testing.assert_array_equal(features[frame], rows[start:start + 28])
    assert len(rows) == 123  # frame 29 would start at row 97: its window is the last 28 rows
    np.testing.assert_array_equal(features[29], rows[-28:])


def test_audiodvp_mfcc_needs_one_full_window():
    with pytest.raises(AudioError, match="too short: 27 MFCC rows, one window needs 28"):
        ours_for(np.zeros(640, np.float32), 1)
