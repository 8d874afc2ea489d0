"""Network trunks several layers share, with the layouts of the libraries the released weights were saved from
(torchvision's ResNet-50 without torchvision). Imports only torch."""
from .resnet import EXPANSION, FEATURES, RESNET50_LAYERS, Bottleneck, ResNet50

__all__ = ["EXPANSION", "FEATURES", "RESNET50_LAYERS", "Bottleneck", "ResNet50"]
