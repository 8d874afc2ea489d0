"""A2EP's audio encoder: transformers' ``Wav2Vec2Model`` run as GSmoothFace's subclass runs it (3dmm_methods.md §2.1,
§8; ``models/wav2vec.py`` of zhanghm1995/GSmoothFace).

The module is transformers' own class, so its state dict has the keys of ``facebook/wav2vec2-base-960h`` and of the
``audio_encoder.*`` part of A2EP's checkpoint. The forward is GSmoothFace's, not transformers': the CNN features
(50 per second) are **linearly interpolated** (``align_corners=True``) to the video's frames *before* the feature
projection and the transformer encoder; SpecAugment time masking (the config's ``mask_time_prob``, at least
``mask_time_min_masks`` spans) while training; ``last_hidden_state`` (B, frames, hidden) out. transformers is the
maintained library the official code subclasses (its ``Wav2Vec2Model`` 4.17 then, 5.x here): it is imported on first use
(``pip install 'talkingface[gsmoothface]'``). Attention is ``eager`` by default because the official forward asks for
attentions (``config.output_attentions = True``), which transformers 5 refuses with SDPA.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ....errors import ConfigError
from ....optional import require

FEATURE_RATE = 50
"""wav2vec 2.0's CNN feature rate at 16 kHz (the product of its strides is 320): the official code hard-codes 50."""
SAMPLE_RATE = 16000

WAV2VEC2_BASE_960H: dict[str, Any] = {
    # facebook/wav2vec2-base-960h's architecture (its config.json); dropouts as there.
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_act": "gelu", "hidden_dropout": 0.1, "activation_dropout": 0.1, "attention_dropout": 0.1,
    "feat_proj_dropout": 0.1, "layerdrop": 0.1, "layer_norm_eps": 1e-5, "feat_extract_norm": "group",
    "feat_extract_activation": "gelu", "conv_dim": [512] * 7, "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_bias": False, "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16, "do_stable_layer_norm": False, "apply_spec_augment": True,
    "mask_time_prob": 0.05, "mask_time_length": 10, "mask_feature_prob": 0.0, "vocab_size": 32,
}


def transformers_module():
    """``transformers`` (MissingDependencyError naming the extra when absent)."""
    return require("transformers", "GSmoothFace's wav2vec 2.0 audio encoder", extra="gsmoothface")


def wav2vec2_config(options: Mapping[str, Any] | None = None, attention: str = "eager"):
    """A ``transformers.Wav2Vec2Config``: wav2vec2-base-960h's architecture updated with ``options``."""
    settings = dict(WAV2VEC2_BASE_960H)
    settings.update(dict(options or {}))
    stride = math.prod(int(s) for s in settings["conv_stride"])
    if stride != SAMPLE_RATE // FEATURE_RATE:
        raise ConfigError(f"gsmoothface.wav2vec2.conv_stride multiplies to {stride}; A2EP interpolates from "
                          f"{FEATURE_RATE} features per second at {SAMPLE_RATE} Hz, which needs "
                          f"{SAMPLE_RATE // FEATURE_RATE}")
    if attention not in ("eager", "sdpa"):
        raise ConfigError(f"gsmoothface.wav2vec2_attention must be eager or sdpa, got {attention!r}")
    return transformers_module().Wav2Vec2Config(attn_implementation=attention, **settings)


def build_wav2vec2(options: Mapping[str, Any] | None = None, attention: str = "eager") -> nn.Module:
    """A randomly initialised ``transformers.Wav2Vec2Model`` with its CNN feature extractor frozen (as A2EP does)."""
    model = transformers_module().Wav2Vec2Model(wav2vec2_config(options, attention))
    model.feature_extractor._freeze_parameters()
    return model


def linear_interpolation(features: torch.Tensor, input_fps: float, output_fps: float,
                         output_len: int | None = None) -> torch.Tensor:
    """(B, T, C) features at ``input_fps`` resampled linearly (ends aligned) to ``output_len`` frames, or
    to ``round(T / input_fps · output_fps)`` (Python's round: halves to even) when it is None."""
    if output_len is None:
        output_len = round(features.shape[1] / float(input_fps) * output_fps)
    resampled = F.interpolate(features.transpose(1, 2), size=output_len, align_corners=True, mode="linear")
    return resampled.transpose(1, 2)


def frames_of(samples: int, fps: float = 25.0, encoder: nn.Module | None = None) -> int:
    """How many frames ``encode`` gives for ``samples`` of audio without ``frame_num`` (``predict``'s count)."""
    if encoder is not None:
        features = int(encoder._get_feat_extract_output_lengths(torch.tensor(samples)))
    else:
        features = cnn_feature_count(samples, WAV2VEC2_BASE_960H["conv_kernel"], WAV2VEC2_BASE_960H["conv_stride"])
    return round(features / float(FEATURE_RATE) * fps)


def cnn_feature_count(samples: int, kernels, strides) -> int:
    """The CNN feature extractor's output length for ``samples`` (unpadded convolutions)."""
    length = int(samples)
    for kernel, stride in zip(kernels, strides):
        length = (length - int(kernel)) // int(stride) + 1
    return length


def encode(encoder: nn.Module, audio: torch.Tensor, frame_num: int | None = None, output_fps: float = 30.0
           ) -> torch.Tensor:
    """GSmoothFace's ``Wav2Vec2Model.forward`` (dataset ``vocaset``): (B, samples) normalised 16 kHz audio to
    (B, frames, hidden). ``frame_num`` fixes the frame count (training); otherwise ``output_fps`` sets it (the
    official default is 30; ``predict`` passes 25)."""
    hidden = encoder.feature_extractor(audio).transpose(1, 2)
    hidden = linear_interpolation(hidden, FEATURE_RATE, output_fps, output_len=frame_num)
    hidden, _ = encoder.feature_projection(hidden)
    if encoder.training:
        hidden = encoder._mask_hidden_states(hidden)
    return encoder.encoder(hidden)[0]
