"""The registered audio feature ``deepspeech``: DeepSpeech v0.1.0's 29 raw logits per video frame (DINet)."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ...config import Config, defaults_of, merge_layer
from ...errors import CheckpointError, ConfigError
from ...registry import register_audio_feature
from ...device import resolve_device
from ...weights import CHECKPOINT_DIR, KnownWeights
from ..features import AudioFeature, reconcile_length, rows_at_fps
from .convert import build_network
from .frontend import SAMPLE_RATE, int16_samples, mfcc_windows
from .network import N_CLASSES, N_INPUT, DeepSpeechNet


LOGITS_PER_SECOND = 25  # 100 MFCC rows/s, every 2nd row into the network, every 2nd output kept
MIN_CHUNK_FRAMES = 64  # dense-layer slices this large give bit-identical results to one-shot processing
DEEPSPEECH_V010 = KnownWeights(
    "deepspeech-0.1.0.safetensors",
    "output_graph.pb of Mozilla DeepSpeech v0.1.0 (DINet's asserts/output_graph.pb, or models/output_graph.pb in "
    "https://github.com/mozilla/DeepSpeech/releases/download/v0.1.0/deepspeech-0.1.0-models.tar.gz), converted "
    "with `talkingface convert-deepspeech output_graph.pb checkpoints/deepspeech-0.1.0.safetensors`",
    "audio feature deepspeech (DINet)",
    licence="MPL-2.0 (mozilla/DeepSpeech LICENSE; the v0.1.0 release states nothing separate for the model)")


def missing_weights_message(path: Path) -> str:
    return (f"DeepSpeech v0.1.0 weights not found at {path} (config key deepspeech.weights). The toolkit never "
            f"downloads them: take output_graph.pb from DINet's asserts/ folder or from Mozilla's DeepSpeech "
            f"v0.1.0 release (deepspeech-0.1.0-models.tar.gz -> models/output_graph.pb), then run "
            f"`talkingface convert-deepspeech output_graph.pb {path}` (deepspeech.weights may also point at the "
            f".pb itself); see docs/deepspeech.md")


@functools.lru_cache(maxsize=2)
def _cached_network(path: str, stamp: tuple[int, int], device: str) -> DeepSpeechNet:
    """One network per (file, modification, device): preprocessing builds a feature object per clip."""
    network = build_network(path, device)
    if network.sizes.n_input != N_INPUT or network.sizes.n_classes != N_CLASSES:
        raise CheckpointError(f"{path} is a DeepSpeech network of {network.sizes.n_input} inputs and "
                              f"{network.sizes.n_classes} outputs; the v0.1.0 pipeline needs {N_INPUT} and {N_CLASSES}")
    return network


def load_network(path: str | Path, device: str | torch.device = "cpu") -> DeepSpeechNet:
    """The (cached) network of a ``.pb`` or converted ``.safetensors``; CheckpointError when absent."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(missing_weights_message(path))
    stat = path.stat()
    return _cached_network(str(path.resolve()), (stat.st_mtime_ns, stat.st_size), str(device))


def deepspeech_logits(wav: np.ndarray, network: DeepSpeechNet, chunk_frames: int | None = None) -> np.ndarray:
    """``(T, 29)`` float32 raw logits at 25 fps of a whole utterance (row i: the audio at i / 25 s).

    ``wav``: ``(N,)`` float in [-1, 1] or int16 at 16 kHz. The network runs on the 50 steps/s input
    and every second output is kept, as DINet's ``deep_speech.py`` does.
    """
    windows = mfcc_windows(int16_samples(wav), SAMPLE_RATE)
    device = next(network.parameters()).device
    with torch.inference_mode():
        logits = network(torch.from_numpy(windows).to(device), chunk_frames=chunk_frames)
    return logits[::2].float().cpu().numpy()


@register_audio_feature("deepspeech")
class DeepSpeechLogits(AudioFeature):
    """DeepSpeech v0.1.0's raw (pre-softmax) 29 logits of each video frame: ``(29,)`` per frame.

    Options (section ``deepspeech``): ``weights`` (.safetensors from ``convert-deepspeech``, or the
    original .pb), ``device`` (auto | cpu | cuda...), ``chunk_frames`` (at most this many 20 ms steps per
    dense-layer batch, >= 64; the BiLSTM always sees the whole utterance).
    At 25 fps frame i gets logit row i; at other rates the row nearest to the frame's time.
    """

    default_config = {"deepspeech": {"weights": str(CHECKPOINT_DIR / DEEPSPEECH_V010.filename), "device": "auto",
                                     "chunk_frames": 4096}}

    def __init__(self, config: Mapping[str, Any] | None = None):
        super().__init__(config)
        options = defaults_of(type(self))["deepspeech"]
        given = (config or {}).get("deepspeech") or {}
        merge_layer(options, dict(given), "audio feature 'deepspeech' options", define=False, prefix="deepspeech.")
        if not isinstance(options["chunk_frames"], int) or options["chunk_frames"] < MIN_CHUNK_FRAMES:
            raise ConfigError(f"deepspeech.chunk_frames must be an integer >= {MIN_CHUNK_FRAMES}, got "
                              f"{options['chunk_frames']!r}")
        self.options = Config(options)

    def frame_shape(self) -> tuple[int, ...]:
        return (N_CLASSES,)

    def network(self) -> DeepSpeechNet:
        return load_network(self.options["weights"], resolve_device(self.options["device"]))

    def logits(self, wav: np.ndarray) -> np.ndarray:
        """``(T, 29)`` float32 logits at 25 fps of the whole ``wav``."""
        return deepspeech_logits(wav, self.network(), self.options["chunk_frames"])

    def frame_features(self, wav: np.ndarray, count: int, fps: float) -> np.ndarray:
        logits = self.logits(wav)
        if fps == LOGITS_PER_SECOND:
            return reconcile_length(logits, count, self.registered_name, fps)
        return rows_at_fps(logits, count, fps, LOGITS_PER_SECOND, self.registered_name, "logit")
