"""The registered audio feature ``deepspeech2``: DeepSpeech2's 29 pre-softmax scores per video frame (LawDNet).

LawDNet's extraction (``extract_deepspeech_pytorch2.py``) keeps every second output step (50 -> 25 per
second). Length rule: ``N = 640 n`` samples (n frames at 25 fps) give ``1 + N // 160 = 4n + 1`` spectrogram
columns, ``2n + 1`` network steps and so ``n + 1`` rows; row ``i`` is the audio at ``i / 25`` s, and the rows
past the last whole frame are dropped, never resampled (tested for every length). The LawDNet README's "DeepSpeech
always gives 3 more frames than the video" is a container whose audio runs ~120 ms past its video: the shared
preprocessing measures the audio in video frames and reconciles at the tail, logging the difference.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ...checkpoint import load_state_dict_strict, read_tensors_of
from ...config import Config, defaults_of, merge_layer
from ...device import resolve_device
from ...errors import CheckpointError
from ...registry import register_audio_feature
from ...weights import CHECKPOINT_DIR, KnownWeights
from ..features import AudioFeature, reconcile_length, rows_at_fps
from .frontend import SAMPLE_RATE, spectrogram
from .network import DeepSpeech2Net


ROWS_PER_SECOND = 25  # 100 spectrogram columns/s, time stride 2 in the first convolution, every 2nd output kept
LIBRISPEECH_V3 = KnownWeights(
    "LibriSpeech_Pretrained_v3.ckpt",
    "deepspeech.pytorch V3.0 release (github.com/SeanNaren/deepspeech.pytorch/releases, librispeech_pretrained_v3"
    ".ckpt; LawDNet's README names it LibriSpeech_Pretrained_v3.ckpt)", "audio feature deepspeech2 (LawDNet)",
    licence="MIT (SeanNaren/deepspeech.pytorch LICENCE; nothing separate for the weights)")


def read_deepspeech2(path: str | Path) -> DeepSpeech2Net:
    """The network of a deepspeech.pytorch (PyTorch Lightning) checkpoint, loaded strictly, in eval mode.

    The file's ``hyper_parameters`` (omegaconf and deepspeech.pytorch configs) are not needed and are read as
    inert ``OpaqueObject``s (``checkpoint.read_tensors_of``); its ``state_dict`` must match the release's layout.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"DeepSpeech2 weights not found at {path} (config key deepspeech2.weights). The "
                              f"toolkit never downloads them: get {LIBRISPEECH_V3.filename} from the "
                              f"{LIBRISPEECH_V3.source}; see docs/audio_features.md")
    checkpoint = read_tensors_of(path)
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or "rnns.0.rnn.weight_hh_l0" not in state:
        raise CheckpointError(f"{path} is not a deepspeech.pytorch checkpoint (no state_dict with rnns.*)")
    try:
        network = DeepSpeech2Net(DeepSpeech2Net.sizes_of(state))
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{path}: the state_dict does not have the DeepSpeech2 layout (missing or odd {exc})") from exc
    load_state_dict_strict(network, state, str(path))
    return network.eval()


@functools.lru_cache(maxsize=2)
def _cached(path: str, stamp: tuple[int, int], device: str) -> DeepSpeech2Net:
    return read_deepspeech2(path).to(device)


def deepspeech2_scores(wav: np.ndarray, network: DeepSpeech2Net) -> np.ndarray:
    """``(n + 1, 29)`` float32 scores at 25 per second of a whole utterance of ``N`` samples (n = N / 640)."""
    device = next(network.parameters()).device
    spect = spectrogram(wav)[None, None].to(device)
    with torch.inference_mode():
        scores = network(spect)
    return scores[::2].float().cpu().numpy()


@register_audio_feature("deepspeech2")
class DeepSpeech2Scores(AudioFeature):
    """DeepSpeech2's 29 pre-softmax scores of each video frame: ``(29,)`` per frame.

    Options (section ``deepspeech2``): ``weights`` (the deepspeech.pytorch checkpoint), ``device``. At 25 fps
    frame i gets row i; at other rates the row nearest to the frame's time. Not interchangeable with
    ``deepspeech`` (v0.1.0): the label sets differ.
    """

    default_config = {"deepspeech2": {"weights": str(CHECKPOINT_DIR / LIBRISPEECH_V3.filename), "device": "auto"}}

    def __init__(self, config: Mapping[str, Any] | None = None):
        super().__init__(config)
        options = defaults_of(type(self))["deepspeech2"]
        merge_layer(options, dict((config or {}).get("deepspeech2") or {}), "audio feature 'deepspeech2' options",
                    define=False, prefix="deepspeech2.")
        self.options = Config(options)

    def frame_shape(self) -> tuple[int, ...]:
        return (29,)

    def network(self) -> DeepSpeech2Net:
        path = Path(self.options["weights"])
        if not path.is_file():
            return read_deepspeech2(path)  # raises, naming the file and where it comes from
        stat = path.stat()
        return _cached(str(path.resolve()), (stat.st_mtime_ns, stat.st_size), str(resolve_device(self.options["device"])))

    def frame_features(self, wav: np.ndarray, count: int, fps: float) -> np.ndarray:
        scores = deepspeech2_scores(wav, self.network())
        if fps == ROWS_PER_SECOND:  # rows 0 .. count - 1; the row at the audio's very end is not a frame
            return reconcile_length(scores[:count], count, self.registered_name, fps)
        return rows_at_fps(scores, count, fps, ROWS_PER_SECOND, self.registered_name, "score")
