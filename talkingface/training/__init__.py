"""The trainer loop and what it needs: devices, seeds, samplers, checkpoints, scalar logs."""
from ..device import resolve_device
from ..seeding import seed_everything
from .trainer import Trainer

__all__ = ["Trainer", "resolve_device", "seed_everything"]
