"""VideoReTalking's three networks with the releases' state-dict layouts and numerics (docs/videoretalking.md):
``DNet`` (expression neutralisation), ``LNet`` (lip synthesis at 96), ``ENet`` (enhancement to 384 around an L-Net)."""
from .dnet import DNet
from .enet import ENet
from .lnet import LNet

__all__ = ["DNet", "ENet", "LNet"]
