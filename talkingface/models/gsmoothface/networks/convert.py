"""GSmoothFace's released files to our submodules' state dicts, and back (3dmm_methods.md §2.1, §2.2, §8).

- A2EP: a PyTorch Lightning 1.5 ``.ckpt`` (``epoch=19-step=10399.ckpt``): ``{"state_dict": {"model.<key>": ...},
  "hyper_parameters": <an OmegaConf config>, "optimizer_states": ..., ...}``; read without unpickling the config
  (``checkpoint.read_release``). The wav2vec 2.0 positional convolution's weight norm is spelled
  ``weight_g``/``weight_v`` by transformers 4.17 (the release) and ``parametrizations.weight.original0/original1`` by
  current transformers; either loads into either.
- TAFT: ``epoch_XXXXX_iteration_XXXXXXXXX_checkpoint.pt``, ``{"net_G", "net_G_ema", "opt_G", "sch_G",
  "current_epoch", "current_iteration"}``; ``net_G`` may carry DistributedDataParallel's ``module.``.
- wav2vec 2.0: ``facebook/wav2vec2-base-960h``'s ``model.safetensors`` / ``pytorch_model.bin``, a flat state dict of
  ``Wav2Vec2ForCTC`` (``wav2vec2.*`` and ``lm_head.*``) or of a bare ``Wav2Vec2Model``.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ....checkpoint import strip_prefix
from ....errors import CheckpointError

A2EP_PREFIX = "model."
TAFT_ENTRIES = ("net_G_ema", "net_G")
POS_CONV = "encoder.pos_conv_embed.conv."
ENCODER = "audio_encoder."
CTC_PREFIX = "wav2vec2."
OLD_NORM = ("weight_g", "weight_v")
NEW_NORM = ("parametrizations.weight.original0", "parametrizations.weight.original1")


def release_kind(checkpoint: Any) -> str | None:
    """``"a2ep"`` (a Lightning checkpoint of ``Face3DMMOneHotFormerModule``), ``"taft"`` (a TAFT trainer checkpoint),
    ``"wav2vec2"`` (wav2vec2-base-960h's weights) or None."""
    if not isinstance(checkpoint, Mapping):
        return None
    if any(str(k).startswith((CTC_PREFIX + "feature_extractor.", "feature_extractor.conv_layers.")) for k in checkpoint):
        return "wav2vec2"
    state = checkpoint.get("state_dict")
    if isinstance(state, Mapping) and f"{A2EP_PREFIX}obj_vector.weight" in state:
        return "a2ep"
    if any(isinstance(checkpoint.get(name), Mapping) for name in TAFT_ENTRIES) and any(
            str(k).replace("module.", "", 1).startswith("editing_net.")
            for name in TAFT_ENTRIES for k in (checkpoint.get(name) or {})):
        return "taft"
    return None


def weight_norm_keys(state: Mapping[str, torch.Tensor], expected: Mapping[str, Any], prefix: str = ENCODER
                     ) -> dict[str, torch.Tensor]:
    """``state`` with the positional convolution's weight-norm tensors (under ``prefix``) renamed to the spelling
    ``expected`` uses (``weight_g``/``weight_v`` when it has neither)."""
    conv = prefix + POS_CONV
    wanted = NEW_NORM if conv + NEW_NORM[0] in expected else OLD_NORM
    other = OLD_NORM if wanted is NEW_NORM else NEW_NORM
    renamed = {}
    for key, value in state.items():
        for old, new in zip(other, wanted):
            if key == conv + old:
                key = conv + new
        renamed[key] = value
    return renamed


def wav2vec2_state(checkpoint: Mapping, source: str, expected: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A ``Wav2Vec2Model`` state dict from wav2vec2-base-960h's file (``wav2vec2.`` stripped, ``lm_head`` and, for
    the 960h model's CTC head, nothing else dropped; weight norm renamed as ``expected``)."""
    state = {k: v for k, v in checkpoint.items() if not str(k).startswith("lm_head.")}
    bad = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise CheckpointError(f"{source}: entries that are not tensors: {bad[:5]}")
    return weight_norm_keys(strip_prefix(state, CTC_PREFIX), expected, prefix="")


def a2ep_state(checkpoint: Mapping, source: str, expected: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A2EP's state dict from a Lightning checkpoint (``model.`` stripped, weight norm renamed as ``expected``)."""
    state = checkpoint["state_dict"]
    foreign = sorted(k for k in state if not str(k).startswith(A2EP_PREFIX))
    if foreign:
        raise CheckpointError(f"{source}: an A2EP checkpoint's state_dict holds keys outside {A2EP_PREFIX!r}: "
                              f"{foreign[:5]}")
    bad = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise CheckpointError(f"{source}: state_dict entries that are not tensors: {bad[:5]}")
    return weight_norm_keys(strip_prefix(state, A2EP_PREFIX), expected)


def taft_state(checkpoint: Mapping, source: str, entry: str = "net_G_ema") -> dict[str, torch.Tensor]:
    """The generator's state dict from a TAFT checkpoint's ``entry`` (``net_G_ema``, the one inference uses, or
    ``net_G``), ``module.`` stripped."""
    if entry not in TAFT_ENTRIES:
        raise CheckpointError(f"gsmoothface.taft.weights must be one of {TAFT_ENTRIES}, got {entry!r}")
    state = checkpoint.get(entry)
    if not isinstance(state, Mapping):
        present = [name for name in TAFT_ENTRIES if isinstance(checkpoint.get(name), Mapping)]
        raise CheckpointError(f"{source}: a TAFT checkpoint without {entry!r} (it holds {present}); set "
                              f"gsmoothface.taft.weights to one of those")
    return strip_prefix(dict(state), "module.")


def convert_release(checkpoint: Mapping, source: str, expected: Mapping[str, Mapping[str, Any]],
                    taft_entry: str = "net_G_ema") -> dict[str, dict[str, torch.Tensor]]:
    """``{"a2ep": state}``, ``{"a2ep.audio_encoder": state}`` or ``{"taft": state}`` (plus ``"taft_train"``:
    ``net_G``, the trained generator, when the file holds it) from a release; ``expected``: our submodules' state dicts
    by those names (for the weight-norm spelling)."""
    kind = release_kind(checkpoint)
    if kind == "a2ep":
        return {"a2ep": a2ep_state(checkpoint, source, expected["a2ep"])}
    if kind == "wav2vec2":
        if "a2ep.audio_encoder" not in expected:
            raise CheckpointError(f"{source}: wav2vec 2.0 weights, but this model's A2EP has no wav2vec 2.0 encoder "
                                  f"(gsmoothface.a2ep.audio_encoder is not wav2vec2)")
        return {"a2ep.audio_encoder": wav2vec2_state(checkpoint, source, expected["a2ep.audio_encoder"])}
    if kind == "taft":
        parts = {"taft": taft_state(checkpoint, source, taft_entry)}
        if isinstance(checkpoint.get("net_G"), Mapping) and "taft_train" in expected:  # fine-tuning goes on from it
            parts["taft_train"] = taft_state(checkpoint, source, "net_G")
        return parts
    raise CheckpointError(f"{source}: not a GSmoothFace release")


def release_example(kind: str, module: torch.nn.Module, old_spelling: bool = True,
                    train_module: torch.nn.Module | None = None) -> dict:
    """What the authors' code would save for ``module``'s weights: a Lightning ``.ckpt`` dict for ``"a2ep"`` (weight
    norm in transformers 4.17's spelling when ``old_spelling``), a TAFT trainer ``.pt`` dict for ``"taft"``
    (``module`` as ``net_G_ema``, ``train_module`` or ``module`` as ``net_G`` with DDP's ``module.``),
    wav2vec2-base-960h's ``Wav2Vec2ForCTC`` state dict for ``"wav2vec2"``."""
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if kind == "wav2vec2":
        if old_spelling:
            state = weight_norm_keys(state, {}, prefix="")
        hidden = state["feature_projection.projection.weight"].shape[0]
        return {**{CTC_PREFIX + k: v for k, v in state.items()}, "lm_head.weight": torch.zeros(32, hidden),
                "lm_head.bias": torch.zeros(32)}
    if kind == "a2ep":
        if old_spelling:
            state = weight_norm_keys(state, {})
        return {"epoch": 19, "global_step": 10399, "pytorch-lightning_version": "1.5.10",
                "state_dict": {A2EP_PREFIX + k: v for k, v in state.items()}, "hyper_parameters": {},
                "optimizer_states": [], "lr_schedulers": []}
    if kind == "taft":
        trained = state if train_module is None else {k: v.detach().clone()
                                                      for k, v in train_module.state_dict().items()}
        return {"net_G": {"module." + k: v for k, v in trained.items()}, "net_G_ema": state, "opt_G": {}, "sch_G": {},
                "current_epoch": 200, "current_iteration": 300000}
    raise ValueError(f"unknown GSmoothFace release kind {kind!r}")
