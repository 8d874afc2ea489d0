"""Training checkpoints: model, optimizers, schedulers, AMP scaler, loop position and RNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError
from ..io_utils import atomic_write
from ..checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, is_native_checkpoint,
                                 load_state_dict_strict, read_checkpoint)


def save_training_checkpoint(path: str | Path, model: Any, optimizers: Mapping, schedulers: Mapping,
                             scaler: torch.amp.GradScaler, loop_state: dict, rng_state: dict) -> Path:
    """Write everything needed to continue training bit-for-bit, atomically (temp file + rename)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": model.registered_name,
        "state_dict": model.state_dict(),
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "schedulers": {name: sched.state_dict() for name, sched in schedulers.items()},
        "scaler": scaler.state_dict(),
        "loop": loop_state,
        "rng": rng_state,
        "config": model.config.to_yaml(),
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_training_checkpoint(path: str | Path, model: Any, optimizers: Mapping, schedulers: Mapping,
                             scaler: torch.amp.GradScaler) -> dict:
    """Restore a checkpoint written by ``save_training_checkpoint``; returns it (loop and rng)."""
    checkpoint = read_checkpoint(path, map_location=model.device)
    if not is_native_checkpoint(checkpoint) or "loop" not in checkpoint:
        raise CheckpointError(f"{path} is not a talkingface training checkpoint (cannot resume from it)")
    if checkpoint.get("model") != model.registered_name:
        raise CheckpointError(f"{path} was written by model {checkpoint.get('model')!r}, not {model.registered_name!r}")
    load_state_dict_strict(model, checkpoint["state_dict"], str(path))
    for kind, targets in (("optimizers", optimizers), ("schedulers", schedulers)):
        saved = checkpoint[kind]
        if set(saved) != set(targets):
            raise CheckpointError(f"{path}: {kind} {sorted(saved)} do not match the model's {sorted(targets)}")
        for name, target in targets.items():
            target.load_state_dict(saved[name])
    scaler.load_state_dict(checkpoint["scaler"])
    return checkpoint
