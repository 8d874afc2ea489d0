"""Face restoration networks the dubbing models run after synthesis (VideoReTalking's enhancement chain): GPEN-BFR-512
and GFPGANv1.3 with the releases' layouts and numerics, in plain PyTorch (no basicsr, facexlib or compiled ops:
docs/videoretalking.md, "Enhancement networks"). Imports only torch, numpy and the lower layers."""

from .gpen import GPEN_BFR_512  # noqa: F401  (declared weights: listed by `talkingface list --weights`)
from .gfpgan import GFPGAN_V13  # noqa: F401  (declared weights: listed by `talkingface list --weights`)
