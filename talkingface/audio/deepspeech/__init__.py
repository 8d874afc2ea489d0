"""DeepSpeech v0.1.0 audio features in PyTorch, without TensorFlow (DINet's audio input).

``graphdef`` reads frozen TensorFlow graphs, ``convert`` maps their weights to ``DeepSpeechNet``
(``network``) and writes safetensors, ``frontend`` is the MFCC input pipeline, ``feature`` registers
the ``deepspeech`` audio feature and ``selfcheck`` compares against TensorFlow where it is installed.
"""
from .convert import build_network, convert_graph, load_weights, read_graph, read_metadata
from .feature import DEEPSPEECH_V010, DeepSpeechLogits, deepspeech_logits, load_network
from .frontend import int16_samples, mfcc_windows
from .graphdef import GraphDefReader
from .network import DeepSpeechNet, DeepSpeechSizes

__all__ = ["DEEPSPEECH_V010", "DeepSpeechLogits", "DeepSpeechNet", "DeepSpeechSizes", "GraphDefReader",
           "build_network", "convert_graph", "deepspeech_logits", "int16_samples", "load_network", "load_weights",
           "mfcc_windows", "read_graph", "read_metadata"]
