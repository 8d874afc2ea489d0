"""Reading checkpoints safely and loading state dicts strictly with a readable mismatch report."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .errors import CheckpointError
from .optional import require

CHECKPOINT_FORMAT = "talkingface"
CHECKPOINT_VERSION = 1


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a ``.pth``/``.pt``/``.ckpt`` file with ``weights_only=True`` or a ``.safetensors`` file.

    Raises CheckpointError naming the file when it is missing, truncated, or contains pickled code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        load_file = require("safetensors.torch", f"reading {path}", package="safetensors").load_file
        try:
            return load_file(str(path), device=str(map_location))
        except Exception as exc:
            raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from exc
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        # weights_only refuses arbitrary classes: that is the point, so say why it failed.
        raise CheckpointError(f"{path}: cannot be read as a weights-only checkpoint ({exc})") from exc


class OpaqueObject:
    """Stands for an object of a class a checkpoint pickled but the toolkit does not need or trust (e.g. the
    configs in a PyTorch Lightning file's ``hyper_parameters``): made without running any code of the file."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    # a pickled dict or list subclass (e.g. Lightning's AttributeDict) is rebuilt item by item
    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("values", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("values", []).extend(values)


# what a tensor checkpoint needs resolved for real; torch itself resolves the storage classes
_TENSOR_GLOBALS = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
                   ("torch._utils", "_rebuild_parameter_with_state"), ("collections", "OrderedDict"),
                   ("torch", "Size"), ("builtins", "set"), ("builtins", "frozenset")}


class _TensorsOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _TENSOR_GLOBALS:
            return super().find_class(module, name)
        return OpaqueObject


class _TensorsOnly:
    """A ``pickle_module`` for ``torch.load`` whose unpickler resolves only ``_TENSOR_GLOBALS``."""

    Unpickler = _TensorsOnlyUnpickler
    load = staticmethod(pickle.load)
    __name__ = "talkingface.checkpoint._TensorsOnly"


def read_tensors_of(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a ``.pth``/``.ckpt`` whose pickle also holds objects of classes that are not installed here or not
    trusted (a Lightning checkpoint's ``hyper_parameters``), which ``weights_only=True`` refuses.

    Tensors, dicts, lists and numbers load; every other class becomes an ``OpaqueObject``. As with
    ``weights_only=True``, nothing in the file can run code: no callable outside the tensor-rebuild functions
    is ever resolved. Raises CheckpointError naming the file when it cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=False, pickle_module=_TensorsOnly)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read as a tensor checkpoint ({exc})") from exc


def read_release(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Read an authors' release: with ``weights_only=True`` first; should the file also pickle objects that it refuses
    (a Lightning ``.ckpt``'s OmegaConf ``hyper_parameters``, optimiser states of other classes), again with
    ``read_tensors_of``, where they become inert ``OpaqueObject``s. Nothing in the file can run code either way; the
    first error is raised when both fail."""
    try:
        return read_checkpoint(path, map_location)
    except CheckpointError as first:
        if not Path(path).is_file():
            raise
        try:
            return read_tensors_of(path, map_location)
        except CheckpointError:
            raise first from None


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key that has it (``module.`` from DataParallel checkpoints)."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}


def add_missing_batchnorm_counters(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add BatchNorm's ``num_batches_tracked`` (as 0) where a release saved before PyTorch 0.4.1 lacks it.

    The counters do not affect eval-mode outputs; adding them lets a strict load check every real tensor.
    """
    state = dict(state_dict)
    for key in [k for k in state if k.endswith(".running_mean")]:
        state.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.zeros((), dtype=torch.long))
    return state


def state_dict_mismatch(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str:
    """A description of missing keys, unexpected keys and shape mismatches ('' when they match)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if hasattr(state_dict[k], "shape") and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]

    def listing(title: str, items: list[str]) -> str:
        shown = ", ".join(items[:10]) + (f", ... ({len(items) - 10} more)" if len(items) > 10 else "")
        return f"{title} ({len(items)}): {shown}"

    parts = [listing(t, i) for t, i in (("missing keys", missing), ("unexpected keys", unexpected),
                                         ("shape mismatches", shapes)) if i]
    return "; ".join(parts)


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``module``; any mismatch raises CheckpointError naming ``source``."""
    problem = state_dict_mismatch(module, state_dict)
    if problem:
        raise CheckpointError(f"{source} does not match {type(module).__name__}: {problem}")
    module.load_state_dict(state_dict, strict=True)


def is_native_checkpoint(obj: Any) -> bool:
    """Whether ``obj`` is a checkpoint written by this toolkit's trainer or ``save_weights``."""
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT
