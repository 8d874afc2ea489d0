"""Audio features: mel against librosa, MFCC against python_speech_features, per-frame alignment."""
from __future__ import annotations

import logging

import librosa
import numpy as np
import pytest
import python_speech_features
import scipy.signal

import talkingface.audio
from talkingface.audio import extract_features, mel_chunks, melspectrogram, mfcc, reconcile_length
from talkingface.registry import AUDIO_FEATURES

SR = 16000


def reference_mel(wav: np.ndarray, pad_mode: str) -> np.ndarray:
    """Wav2Lip's audio.melspectrogram written with librosa and scipy, as the authors' code runs it."""
    emphasised = scipy.signal.lfilter([1, -0.97], [1], wav)
    magnitude = np.abs(librosa.stft(emphasised, n_fft=800, hop_length=200, win_length=800, center=True,
                                    pad_mode=pad_mode))
    mel = librosa.filters.mel(sr=SR, n_fft=800, n_mels=80, fmin=55, fmax=7600) @ magnitude
    db = 20 * np.log10(np.maximum(1e-5, mel)) - 20
    return np.clip(8 * (db + 100) / 100 - 4, -4, 4)


def sweep(seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * scipy.signal.chirp(t, f0=50, t1=seconds, f1=7900)).astype(np.float32)


def noise(samples: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(samples)).astype(np.float32)


def int16_scale(samples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-32768, 32768, samples).astype(np.float64)


@pytest.fixture
def feature_log(caplog):
    """Records of ``talkingface.audio.features`` even after ``setup_logging`` stopped propagation
    (other tests call ``talkingface.run`` in this process)."""
    logger = logging.getLogger("talkingface.audio.features")
    logger.addHandler(caplog.handler)
    with caplog.at_level(logging.INFO, logger="talkingface.audio.features"):
        yield caplog
    logger.removeHandler(caplog.handler)


@pytest.mark.numerics
@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
@pytest.mark.parametrize("wav", [sweep(), noise(16123)], ids=["sweep", "noise"])
def test_melspectrogram_matches_librosa_reference(wav, pad_mode):
    mel = melspectrogram(wav, pad_mode=pad_mode)
    assert mel.dtype == np.float32
    assert np.abs(mel - reference_mel(wav, pad_mode)).max() < 1e-4


def test_melspectrogram_default_pads_by_reflection():
    wav = noise(8000)
    assert np.abs(melspectrogram(wav) - reference_mel(wav, "reflect")).max() < 1e-4


@pytest.mark.parametrize("samples", [16000, 16123])
def test_constant_padding_changes_only_the_two_edge_columns_at_each_end(samples):
    wav = noise(samples, seed=3)
    reflect, constant = melspectrogram(wav, pad_mode="reflect"), melspectrogram(wav, pad_mode="constant")
    np.testing.assert_array_equal(reflect[:, 2:-2], constant[:, 2:-2])
    for column in (0, 1, -2, -1):
        assert not np.allclose(reflect[:, column], constant[:, column])


@pytest.mark.parametrize("samples", [1, 399, 400, 401, 3199, 3200, 16000])
def test_melspectrogram_shape(samples):
    assert melspectrogram(noise(samples)).shape == (80, 1 + samples // 200)


def test_int16_input_equals_float_input_divided_by_32768():
    samples = np.random.default_rng(4).integers(-32768, 32768, 8000).astype(np.int16)
    np.testing.assert_array_equal(melspectrogram(samples), melspectrogram(samples / 32768.0))


def test_melspectrogram_rejects_other_sample_rates_and_bad_input():
    with pytest.raises(ValueError, match="resample"):
        melspectrogram(noise(8000), sample_rate=22050)
    with pytest.raises(ValueError, match="pad_mode"):
        melspectrogram(noise(8000), pad_mode="edge")
    wav = noise(8000)
    wav[123] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite samples .* at sample 123"):
        melspectrogram(wav)
    with pytest.raises(ValueError, match="mono"):
        melspectrogram(np.zeros((2, 8000), np.float32))


def column_ramp(columns: int) -> np.ndarray:
    """An ``(80, columns)`` mel whose every column holds its own index."""
    return np.tile(np.arange(columns, dtype=np.float32), (80, 1))


@pytest.mark.parametrize("fps, starts", [(25, [0, 3, 6, 9, 12, 16, 19, 22, 24, 24]),
                                         (30, [0, 2, 5, 8, 10, 13, 16, 18, 21, 24])])
def test_mel_chunks_start_at_the_frame_time_and_clamp_at_the_end(fps, starts):
    chunks = mel_chunks(column_ramp(40), num_frames=10, fps=fps)
    assert chunks.shape == (10, 80, 16) and chunks.dtype == np.float32
    for frame, start in enumerate(starts):
        np.testing.assert_array_equal(chunks[frame], column_ramp(40)[:, start:start + 16])


def test_mel_chunks_need_one_full_window():
    with pytest.raises(ValueError, match="too short: 15 mel columns"):
        mel_chunks(column_ramp(15), num_frames=1)


@pytest.mark.numerics
@pytest.mark.parametrize("samples", [1, 100, 399, 400, 401, 560, 561, 720, 16000, 16160, 12345])
def test_mfcc_matches_python_speech_features_on_int16_scale_noise(samples):
    signal = int16_scale(samples, seed=samples)
    ours = mfcc(signal)
    assert ours.shape == (1 + max(0, -(-(samples - 400) // 160)), 13)
    np.testing.assert_allclose(ours, python_speech_features.mfcc(signal), rtol=1e-6, atol=1e-6)


@pytest.mark.numerics
def test_mfcc_matches_python_speech_features_on_a_sine_and_silence():
    t = np.arange(2 * SR) / SR
    sine = np.round(10000 * np.sin(2 * np.pi * 440 * t))
    np.testing.assert_allclose(mfcc(sine), python_speech_features.mfcc(sine), rtol=1e-6, atol=1e-6)
    silence = np.zeros(4000)
    np.testing.assert_allclose(mfcc(silence), python_speech_features.mfcc(silence), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mfcc(silence, append_energy=False),
                               python_speech_features.mfcc(silence, appendEnergy=False), rtol=1e-6, atol=1e-6)


@pytest.mark.numerics
def test_mfcc_matches_python_speech_features_with_other_parameters():
    signal = int16_scale(20000, seed=7)
    ours = mfcc(signal, 8000, winlen=0.032, winstep=0.0125, numcep=20, nfilt=40, nfft=1024, lowfreq=100,
                highfreq=3700, preemph=0.9, ceplifter=0, append_energy=False)
    theirs = python_speech_features.mfcc(signal, 8000, winlen=0.032, winstep=0.0125, numcep=20, nfilt=40,
                                         nfft=1024, lowfreq=100, highfreq=3700, preemph=0.9, ceplifter=0,
                                         appendEnergy=False)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_mel_and_mfcc_are_registered_on_import():
    assert {"mel", "mfcc"} <= set(AUDIO_FEATURES.names())
    assert AUDIO_FEATURES.get("mel") is talkingface.audio.features.MelChunks
    assert AUDIO_FEATURES.get("mfcc") is talkingface.audio.features.MfccRows


def test_extract_matches_the_underlying_features_when_lengths_agree():
    wav = noise(2 * SR, seed=5)
    features = extract_features(["mel", "mfcc"], wav, num_frames=50)
    np.testing.assert_array_equal(features["mel"], mel_chunks(melspectrogram(wav), 50))
    rows = mfcc(np.clip(wav.astype(np.float64) * 32768, -32768, 32767))
    assert features["mfcc"].shape == (50, 4, 13) and features["mfcc"].dtype == np.float32
    np.testing.assert_array_equal(features["mfcc"][10], rows[40:44].astype(np.float32))
    np.testing.assert_array_equal(features["mfcc"][49], rows[-4:].astype(np.float32))


def test_mfcc_rows_at_30_fps_start_at_the_rounded_frame_time():
    wav = noise(2 * SR, seed=6)
    rows = mfcc(np.clip(wav.astype(np.float64) * 32768, -32768, 32767)).astype(np.float32)
    features = extract_features(["mfcc"], wav, num_frames=60, fps=30)["mfcc"]
    for frame, start in [(1, 3), (2, 7), (3, 10), (4, 13)]:
        np.testing.assert_array_equal(features[frame], rows[start:start + 4])


@pytest.mark.parametrize("name", ["mel", "mfcc"])
def test_extract_trims_audio_two_seconds_longer_than_the_video(name, feature_log):
    wav = noise(4 * SR, seed=8)
    features = extract_features([name], wav, num_frames=50)[name]
    assert features.shape[0] == 50
    untrimmed = extract_features([name], wav, num_frames=100)[name]
    np.testing.assert_array_equal(features, untrimmed[:50])
    assert f"{name}: the audio is 2.000 s longer than the video; trimmed 50 trailing frames" in feature_log.text


@pytest.mark.parametrize("name", ["mel", "mfcc"])
def test_extract_pads_audio_two_seconds_shorter_than_the_video(name, feature_log):
    wav = noise(2 * SR, seed=9)
    features = extract_features([name], wav, num_frames=100)[name]
    assert features.shape[0] == 100
    real = extract_features([name], wav, num_frames=50)[name]
    np.testing.assert_array_equal(features[:50], real)
    np.testing.assert_array_equal(features[50:], np.repeat(real[-1:], 50, axis=0))
    assert f"{name}: the audio is 2.000 s shorter than the video; padded 50 trailing frames" in feature_log.text


def test_extract_logs_nothing_when_lengths_agree(feature_log):
    extract_features(["mel"], noise(2 * SR), num_frames=50)
    assert feature_log.records == []


def test_reconcile_length_pads_with_zeros_when_there_are_no_features(feature_log):
    padded = reconcile_length(np.zeros((0, 4, 13), np.float32), 3, "mfcc", 25.0)
    assert padded.shape == (3, 4, 13) and not padded.any()
    assert "padded 3 trailing frames" in feature_log.text
    assert reconcile_length(np.ones((5, 2)), 5, "x", 25.0).shape == (5, 2)


def test_extract_of_audio_shorter_than_half_a_frame_gives_zeros():
    features = extract_features(["mel"], noise(100), num_frames=4)["mel"]
    assert features.shape == (4, 80, 16) and not features.any()


@pytest.mark.numerics
def test_mfcc_in_blocks_equals_one_block(monkeypatch):
    import importlib

    mfcc_module = importlib.import_module("talkingface.audio.mfcc")  # the package re-exports the function
    rng = np.random.default_rng(3)
    signal = rng.standard_normal(16000 * 45) * 3000  # 4,499 frames: three blocks of 2,048
    signal[16000:20000] = 0  # digital silence takes the eps floor in every block
    blocked = mfcc_module.mfcc(signal)
    monkeypatch.setattr(mfcc_module, "_BLOCK_FRAMES", 10**9)
    whole = mfcc_module.mfcc(signal)
    assert blocked.shape == whole.shape == (4499, 13)
    assert np.abs(blocked - whole).max() <= 1e-12 * np.abs(whole).max()  # BLAS may block rows differently
