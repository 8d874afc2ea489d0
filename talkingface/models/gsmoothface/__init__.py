"""GSmoothFace (Zhang et al., TVCG 2025): A2EP audio-to-expression, MAFB blending and TAFT face translation
(docs/gsmoothface.md)."""
from .model import GSmoothFace

__all__ = ["GSmoothFace"]
