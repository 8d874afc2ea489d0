"""LPIPS (Zhang et al. 2018) as the ``lpips`` 0.1.4 package computes it, without depending on it."""
from .metric import LPIPSMetric
from .network import AlexNetFeatures, LinearHeads, LPIPSNetwork, SqueezeNet11Features, VGG16Features
from .scorer import LPIPS
from .weights import BACKBONE_WEIGHTS, HEAD_WEIGHTS, load_lpips_network

__all__ = ["AlexNetFeatures", "BACKBONE_WEIGHTS", "HEAD_WEIGHTS", "LPIPS", "LPIPSMetric", "LPIPSNetwork",
           "LinearHeads", "SqueezeNet11Features", "VGG16Features", "load_lpips_network"]
