"""Reading DINet's released checkpoints into the container's state dicts.

Official layouts (``torch.load(..., weights_only=True)`` reads them: tensors, ints, dicts):

- ``clip_training_DINet_256mouth.pth``: ``{'epoch', 'state_dict': {'net_g', 'net_dI', 'net_dV'},
  'optimizer': {...}}``; every key carries DataParallel's ``module.`` prefix.
- frame-stage checkpoints (64/128/256 mouth): the same with only ``net_g`` and ``net_dI``.
- ``syncnet_256mouth.pth``: ``{'state_dict': {'net': {...}}}``, no prefix.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ....checkpoint import add_missing_batchnorm_counters, strip_prefix
from ....errors import CheckpointError

OFFICIAL_NETWORKS: dict[str, str] = {
    "net_g": "generator",
    "net_dI": "frame_discriminator",
    "net_dV": "clip_discriminator",
    "net": "syncnet",
}
"""Official ``state_dict`` entry -> attribute of :class:`DINetNetworks`."""

StateDicts = dict[str, dict[str, torch.Tensor]]


def official_dinet_layout(obj: Any) -> str | None:
    """``"training"`` (net_g [+ net_dI, net_dV]), ``"syncnet"`` (net), or None for anything else."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        return None
    nets = obj["state_dict"]
    if "net_g" in nets and all(isinstance(nets[k], Mapping) for k in nets if k in OFFICIAL_NETWORKS):
        return "training"
    if set(nets) == {"net"} and isinstance(nets["net"], Mapping):
        return "syncnet"
    return None


def _clean(state_dict: Mapping[str, Any], entry: str, source: str) -> dict[str, torch.Tensor]:
    """Strip ``module.``, check every value is a tensor, add missing BatchNorm counters."""
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: state_dict[{entry!r}] has non-tensor entries: {', '.join(map(str, bad[:5]))}")
    return add_missing_batchnorm_counters(strip_prefix(state_dict, "module."))


def convert_dinet_checkpoint(obj: Any, source: str = "checkpoint") -> StateDicts:
    """Our per-network state dicts from an official DINet file's contents.

    Returns ``{attribute: state_dict}`` with the attributes of :class:`DINetNetworks` (``generator``,
    ``frame_discriminator``, ``clip_discriminator``, ``syncnet``) for the networks present. Keys lose
    the ``module.`` prefix and gain ``num_batches_tracked`` where an older file lacks it; optimizer
    state and epoch are ignored. Raises CheckpointError naming ``source`` for another layout.
    """
    layout = official_dinet_layout(obj)
    if layout is None:
        found = sorted(obj.keys()) if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{source} is not an official DINet checkpoint (expected ['state_dict'] with "
                              f"net_g/net_dI/net_dV or net; found {found})")
    nets = obj["state_dict"]
    unknown = sorted(set(nets) - set(OFFICIAL_NETWORKS))
    if unknown:
        raise CheckpointError(f"{source}: unexpected networks in state_dict: {', '.join(unknown)}")
    return {OFFICIAL_NETWORKS[entry]: _clean(nets[entry], entry, source) for entry in nets}
