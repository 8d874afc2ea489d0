"""Per-video-frame audio features: Wav2Lip's mel spectrogram, python_speech_features MFCC, their registry entries."""
from .features import AudioFeature, extract_features, reconcile_length
from . import deepspeech  # noqa: F401  (registers the audio feature "deepspeech")
from . import deepspeech2  # noqa: F401  (registers the audio feature "deepspeech2")
from .mel import mel_chunks, melspectrogram
from .mfcc import mfcc
from .vectors import feature_time_axis, feature_width, frame_vectors

__all__ = ["AudioFeature", "extract_features", "feature_time_axis", "feature_width", "frame_vectors", "mel_chunks",
           "melspectrogram", "mfcc", "reconcile_length"]
