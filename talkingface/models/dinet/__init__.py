"""DINet (Zhang et al., AAAI 2023): deformation inpainting network for few-shot face dubbing.

``networks`` (official layout), ``data`` (crops, clips, datasets, inference plan), ``model`` (the registered
``dinet`` model: stages, losses, inference). See docs/dinet.md.
"""
from .model import DINet, audio_width

__all__ = ["DINet", "audio_width"]
