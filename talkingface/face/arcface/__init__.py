"""ArcFace identity embeddings: insightface arcface_torch's ``iresnet`` backbones in the layout of their released
``backbone.pth`` files, loading, and the identity loss VideoReTalking's paper puts on E-Net's output."""
from .loss import embed_frozen, identity_loss, prepare_faces
from .network import (DEPTHS, EMBEDDING_SIZE, INPUT_SIZE, IBasicBlock, IResNet, iresnet, iresnet18, iresnet34,
                      iresnet50, iresnet100, iresnet200, normalize)
from .weights import ARCFACE_R100, load_arcface

__all__ = [
    "ARCFACE_R100", "DEPTHS", "EMBEDDING_SIZE", "INPUT_SIZE", "IBasicBlock", "IResNet", "embed_frozen", "identity_loss",
    "iresnet", "iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200", "load_arcface", "normalize",
    "prepare_faces",
]
