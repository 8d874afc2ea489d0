"""LawDNet's networks with the official module layout and numerics (state-dict compatible with the release)."""
from .attention import CrossAttention, FlattenAndLinear
from .generator import LawDNetGenerator
from .warp import LocalAffineWarp, standard_grid

__all__ = ["CrossAttention", "FlattenAndLinear", "LawDNetGenerator", "LocalAffineWarp", "standard_grid"]
