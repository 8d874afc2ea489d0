"""DeepSpeech2 (deepspeech.pytorch v3) features for LawDNet: network, spectrogram front end, registered feature."""
from .feature import LIBRISPEECH_V3, DeepSpeech2Scores, deepspeech2_scores, read_deepspeech2
from .frontend import spectrogram
from .network import LABELS, DeepSpeech2Net, DeepSpeech2Sizes

__all__ = ["LABELS", "LIBRISPEECH_V3", "DeepSpeech2Net", "DeepSpeech2Scores", "DeepSpeech2Sizes",
           "deepspeech2_scores", "read_deepspeech2", "spectrogram"]
