"""An ArcFace identity loss for generated faces: ``1 - cos(embedding(fake), embedding(real))``, averaged.

VideoReTalking's paper adds an identity loss on E-Net's output with a pretrained ArcFace; the authors' training code
is not published. This is the form Deep3DFaceRecon (vendored in VideoReTalking, ``face3d/models/losses.py``:
``perceptual_loss``) gives it: L2-normalised embeddings, ``sum(1 - cos) / B``, the recognition network frozen in eval
mode ("freeze bn").

What region is fed, and why. ArcFace was trained on 112 x 112 crops aligned by five points to a fixed template (eyes
at y = 51.6 px, mouth corners at y = 92.3 px, eye centres 35.2 px apart). E-Net's 384 x 384 training faces are loose
face boxes, not aligned crops (the release: S3FD's box padded 20 px down; the toolkit, docs/videoretalking.md "Data":
the 68 landmarks' bounding box, its top raised by 20 % of its height, the same pads), resized to a square whatever
their aspect. A training batch has no landmarks to align with, and such a box is, by a rough estimate from typical
68-landmark proportions, already somewhat tighter around the face than ArcFace's template (the face roughly 1.2-1.4x
larger, the eyes higher), so cutting a sub-region would move further from what ArcFace saw, not closer. The whole
crop is therefore fed, resized to 112 x 112 (bilinear, ``align_corners=False``, no antialiasing: a plain
``F.interpolate``; a 112 input is used as it is). Both images pass through the same geometry, so the loss measures
how the generated face's identity differs from the real one's in that geometry; absolute similarities are lower
than on aligned crops, which does not matter for a loss driven to 0.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .network import INPUT_SIZE, normalize


def prepare_faces(faces: torch.Tensor, color: str = "rgb") -> torch.Tensor:
    """(B, 3, H, W) face crops in [0, 1] (``color`` 'rgb' or 'bgr') -> (B, 3, 112, 112) RGB in [-1, 1], the
    backbone's input: the whole crop, resized bilinearly without antialiasing unless it is 112 x 112 already."""
    if faces.ndim != 4 or faces.shape[1] != 3:
        raise ValueError(f"identity_loss expects (B, 3, H, W) face crops, got shape {tuple(faces.shape)}")
    if color not in ("rgb", "bgr"):
        raise ValueError(f"color must be 'rgb' or 'bgr', got {color!r}")
    if color == "bgr":
        faces = faces.flip(1)
    if faces.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        faces = F.interpolate(faces, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                              antialias=False)
    return normalize(faces)


def embed_frozen(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``backbone(x)`` with its parameters and buffers detached: gradients reach ``x``, never the weights (whatever
    their ``requires_grad``), and nothing accumulates in their ``.grad``."""
    tensors = {name: t.detach() for name, t in itertools.chain(backbone.named_parameters(), backbone.named_buffers())}
    return torch.func.functional_call(backbone, tensors, (x,))


def identity_loss(backbone: nn.Module, fake: torch.Tensor, real: torch.Tensor, color: str = "rgb") -> torch.Tensor:
    """Mean over the batch of ``1 - cosine_similarity(backbone(fake), backbone(real))``, a scalar in [0, 2].

    ``fake`` and ``real``: (B, 3, H, W) face crops in [0, 1], any size (both fed whole, resized to 112: module
    docstring), RGB or, with ``color='bgr'``, BGR (E-Net's cv2 frames). ``backbone``: an ``IResNet`` (e.g.
    ``load_arcface()``); it is put in eval mode (BatchNorm uses its running statistics even inside a module that is
    training) and kept frozen: the real faces' embeddings are computed without a graph, the fake faces' with the
    weights detached, so gradients flow to ``fake`` only.
    """
    if fake.shape != real.shape:
        raise ValueError(f"fake and real must have the same shape, got {tuple(fake.shape)} and {tuple(real.shape)}")
    backbone.eval()
    with torch.no_grad():
        target = backbone(prepare_faces(real, color))
    embedding = embed_frozen(backbone, prepare_faces(fake, color))
    return (1.0 - F.cosine_similarity(embedding, target, dim=1)).mean()
