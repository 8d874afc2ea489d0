"""LawDNet (iPaw-AI-LAB/LawDNet_2024): DINet's successor with local affine warping and audio/video cross-attention.

``networks`` (official layout and numerics), ``data`` (the frontalised crop, its mask, paste-backs, training
crops), ``model`` (the registered ``lawdnet`` model: stages, losses, inference). See docs/lawdnet.md.
"""
from .model import LawDNet

__all__ = ["LawDNet"]
