"""GSmoothFace's networks in the layouts of the authors' checkpoints (3dmm_methods.md §2.2, §3, §8): ``TaftGenerator``
(TAFT, the target-adaptive face translation generator, ``net_G_ema`` of the released ``.pt``)."""
from .taft import TaftGenerator

__all__ = ["TaftGenerator"]
