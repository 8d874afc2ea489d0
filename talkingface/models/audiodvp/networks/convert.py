"""AudioDVP's weight files -> our networks' state dicts, recognised by content (not by file name), and back.

- ``atnet_lstm_18.pth`` (ATVGnet, trained on LRW): ``AT_net``'s bare state dict saved from ``nn.DataParallel``
  (every key ``module.``), 52 tensors: the encoder (``audio_eocder.*``, ``audio_eocder_fc.*``) and the unused
  ``lmark_encoder.*``, ``lstm.*``, ``lstm_fc.*``, which are dropped. AudioDVP's ``test.py`` strips ``module.``
  (``k[7:]``) and loads strictly.
- ``delta_net.pth`` (``train_exp.py``): ``AudioExpressionModule``'s bare state dict, ``conv1/2/3``, ``fc``.
- ``{epoch}_net_G.pth`` / ``{epoch}_net_D.pth`` (``vendor/neural-face-renderer``'s ``save_networks``): the bare
  state dicts of ``UnetGenerator`` (``model.model.*``) and ``NLayerDiscriminator`` (``model.N.*``).

A leading ``module.`` is removed from any of them. A BatchNorm whose ``num_batches_tracked`` is missing (a file
from before PyTorch 0.4.1) gets a zero counter, what loading it into a fresh module would leave. The returned
submodule names are the model's: ``audio_encoder``, ``audio2expression``, ``renderer``, ``discriminator``.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch
from torch import nn

from ....errors import CheckpointError
from .atnet import ATNetEncoder

RELEASE_FILES = {"audio_encoder": "atnet_lstm_18.pth", "audio2expression": "delta_net.pth",
                 "renderer": "{epoch}_net_G.pth", "discriminator": "{epoch}_net_D.pth"}
ATNET_OWN = ("audio_eocder.", "audio_eocder_fc.")
ATNET_UNUSED = ("lmark_encoder.", "lstm.", "lstm_fc.")
DELTA_KEYS = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight", "conv3.bias", "fc.weight",
              "fc.bias")
_GENERATOR_KEY = re.compile(r"model\.model\.\d+\.")
_DISCRIMINATOR_KEY = re.compile(r"model\.\d+\.")
_COUNTER = "num_batches_tracked"


def _atnet_unused_shapes() -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """The shapes of AT_net's modules that its forward never runs, as the release holds them: those before the
    encoder (``lmark_encoder``: Linear 6→256, ReLU, Linear 256→512) and after it (``lstm``: 3 layers 768→256,
    ``lstm_fc``: Linear 256→6)."""
    lstm = {}
    for layer in range(3):
        inputs = 768 if layer == 0 else 256
        lstm.update({f"lstm.weight_ih_l{layer}": (1024, inputs), f"lstm.weight_hh_l{layer}": (1024, 256),
                     f"lstm.bias_ih_l{layer}": (1024,), f"lstm.bias_hh_l{layer}": (1024,)})
    before = {"lmark_encoder.0.weight": (256, 6), "lmark_encoder.0.bias": (256,), "lmark_encoder.2.weight": (512, 256),
              "lmark_encoder.2.bias": (512,)}
    return before, {**lstm, "lstm_fc.0.weight": (6, 256), "lstm_fc.0.bias": (6,)}


def _strip(key: str) -> str:
    return key[len("module."):] if key.startswith("module.") else key


def release_kind(checkpoint: Any) -> str | None:
    """``"audio_encoder"``, ``"audio2expression"``, ``"renderer"`` or ``"discriminator"`` for the contents of
    ``atnet_lstm_18.pth``, ``delta_net.pth``, ``*_net_G.pth`` or ``*_net_D.pth`` (whatever the file is called), or
    None for anything else."""
    if not isinstance(checkpoint, Mapping) or not checkpoint or not all(isinstance(k, str) for k in checkpoint):
        return None
    keys = [_strip(k) for k in checkpoint]
    if any(k.startswith(ATNET_OWN) for k in keys):
        return "audio_encoder"
    if any(_GENERATOR_KEY.match(k) for k in keys):
        return "renderer"
    if any(_DISCRIMINATOR_KEY.match(k) for k in keys):
        return "discriminator"
    prefixes = tuple(k.split(".")[0] + "." for k in DELTA_KEYS)
    if all(k.startswith(prefixes) for k in keys) and any(k.startswith(("conv1.", "conv2.", "conv3.")) for k in keys):
        return "audio2expression"
    return None


def _with_counters(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with a zero ``num_batches_tracked`` after each BatchNorm's ``running_var`` that lacks one."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        out[key] = value
        if key.endswith(".running_var"):
            counter = key[: -len("running_var")] + _COUNTER
            if counter not in state:
                out[counter] = torch.tensor(0, dtype=torch.long)
    return out


def _damaged(source: str, kind: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{source}: a damaged {RELEASE_FILES[kind]} (AudioDVP {kind}): {problem}")


def _check(kind: str, state: Mapping[str, Any], source: str) -> None:
    """CheckpointError naming ``source`` for entries the ``kind`` of file cannot hold."""
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise _damaged(source, kind, f"entries that are not tensors: {', '.join(bad[:5])}")
    if kind == "audio_encoder":
        with torch.device("meta"):
            own = set(ATNetEncoder().state_dict())
        expected = {k for k in own if not k.endswith(_COUNTER)}
        stray = [k for k in state if not k.startswith(ATNET_UNUSED) and k not in own]  # the unused ones are ignored
    elif kind == "audio2expression":
        expected, stray = set(DELTA_KEYS), [k for k in state if k not in DELTA_KEYS]
    else:
        pattern = _GENERATOR_KEY if kind == "renderer" else _DISCRIMINATOR_KEY
        expected = {"model.model.0.weight" if kind == "renderer" else "model.0.weight"}
        stray = [k for k in state if not pattern.match(k)]
    missing = sorted(expected - set(state))
    problems = ([f"unexpected {', '.join(stray[:5])}"] if stray else []) + (
        [f"missing {', '.join(missing[:5])}"] if missing else [])
    if problems:
        raise _damaged(source, kind, "; ".join(problems))


def convert_release(checkpoint: Any, source: str = "checkpoint") -> dict[str, dict[str, torch.Tensor]]:
    """``{submodule: state_dict}`` from a release file's contents (one entry; the AT-net file's unused modules
    dropped, missing BatchNorm counters filled with zeros). CheckpointError naming ``source`` for a file that is not
    one of them or is damaged."""
    kind = release_kind(checkpoint)
    if kind is None:
        found = sorted(map(str, checkpoint))[:8] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointError(f"{source} is not one of AudioDVP's weight files ({', '.join(RELEASE_FILES.values())}: "
                              f"bare state dicts); found {found}")
    state = {_strip(k): v for k, v in checkpoint.items()}
    if len(state) != len(checkpoint):
        raise _damaged(source, kind, "keys that differ only by a 'module.' prefix")
    _check(kind, state, source)
    if kind == "audio_encoder":
        state = {k: v for k, v in state.items() if k.startswith(ATNET_OWN)}
    return {kind: _with_counters(state)}


def release_example(kind: str, module: nn.Module) -> dict[str, torch.Tensor]:
    """What the authors' code would save for ``module`` as the ``kind`` file: the bare state dict; for the AT-net,
    ``AT_net``'s whole state dict (the unused modules as zeros of their shapes, in ``AT_net``'s order) with
    DataParallel's ``module.`` on every key."""
    if kind not in RELEASE_FILES:
        raise KeyError(f"{kind!r} is not one of AudioDVP's weight files ({', '.join(RELEASE_FILES)})")
    state = module.state_dict()
    if kind != "audio_encoder":
        return dict(state)
    before, after = _atnet_unused_shapes()
    zeros = lambda shapes: {k: torch.zeros(s) for k, s in shapes.items()}  # noqa: E731
    return {f"module.{k}": v for k, v in {**zeros(before), **state, **zeros(after)}.items()}
