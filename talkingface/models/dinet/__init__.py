"""DINet (Zhang et al., AAAI 2023): deformation inpainting network for few-shot face dubbing.

``networks`` (official layout), ``data`` (crops, clips, datasets, inference plan), ``model`` (the registered
``dinet`` model: stages, losses, inference). See docs/dinet.md.
"""
from .model import DINet, audio_width
from .stages import StageSettings, lr_factor, stage_settings

__all__ = ["DINet", "StageSettings", "audio_width", "lr_factor", "stage_settings"]
