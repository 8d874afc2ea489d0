"""Training losses shared by the inpainting models: LSGAN terms, the discriminator step, SyncNet MSE, and the
perceptual loss (VGG19, or the documented pixel-L1 fallback when its weights are absent)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from ...errors import CheckpointError, ConfigError
from .vgg import VGG19_WEIGHTS, Vgg19Features, half_resolution_pair, perceptual_loss, style_loss

logger = logging.getLogger(__name__)

PERCEPTUAL_FALLBACKS = ("l1", "error")


def lsgan(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """``MSE(D(x), 1)`` for ``real`` targets, ``MSE(D(x), 0)`` otherwise (the release's GANLoss, LSGAN)."""
    return F.mse_loss(logits, torch.full_like(logits, 1.0 if real else 0.0))


def discriminator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """``0.5 * [MSE(D(fake), 0) + MSE(D(real), 1)]``."""
    return 0.5 * (lsgan(fake_logits, False) + lsgan(real_logits, True))


def sync_loss(scores: torch.Tensor, in_sync: bool = True) -> torch.Tensor:
    """MSE of SyncNet's raw score map to 1 (in sync) or 0 (off sync)."""
    return lsgan(scores, in_sync)


def discriminator_step(model: Any, name: str, net: torch.nn.Module, fake: torch.Tensor,
                       real: torch.Tensor) -> torch.Tensor:
    """One LSGAN update of discriminator ``net`` (optimizer ``model.optimizers[name]``) on detached ``fake``
    and ``real``; ``model`` is the TalkingFaceModel running the step (autocast, backward, optimizer step)."""
    with model.autocast():
        loss = discriminator_loss(net(fake.detach())[1], net(real)[1])
    model.backward(loss)
    model.optimizer_step(model.optimizers[name])
    return loss


def pixel_l1_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The fallback for the perceptual loss: mean of the pixel L1 at full and at half resolution
    (halved like the perceptual loss: fake by 3x3/2 average pooling, real bilinear)."""
    fake_half, real_half = half_resolution_pair(fake, real)
    return 0.5 * (F.l1_loss(fake, real) + F.l1_loss(fake_half, real_half))


def resolve_vgg19(path: Path, fallback: str, section: str, fallback_loss: str) -> Vgg19Features | None:
    """The frozen ImageNet VGG19 at ``path``; when the file is absent, CheckpointError (``fallback: error``) or None
    after one warning naming the file, its source and ``fallback_loss`` (what trains instead)."""
    reason = VGG19_WEIGHTS.missing_reason(path)
    if reason is None:
        return Vgg19Features.pretrained(path).eval()
    if fallback == "error":
        raise CheckpointError(f"the {section} perceptual loss needs VGG19 weights: {reason} (download "
                              f"{VGG19_WEIGHTS.source}, or set {section}.perceptual_fallback: l1)")
    logger.warning("%s perceptual loss: VGG19 weights %s are missing (%s); training with the 'l1' fallback (%s) "
                   "instead. Download %s to %s for the official loss.", section, path, reason, fallback_loss,
                   VGG19_WEIGHTS.source, path)
    return None


class LazyVgg19:
    """The frozen ImageNet VGG19 of a perceptual loss, resolved on first use (``resolve_vgg19``: CheckpointError or
    None with a warning when the file is absent) and kept out of the model's state dict. Subclasses set ``path``,
    ``fallback``, ``section`` and ``fallback_loss`` (what trains without it), and ``_vgg``/``_resolved`` when they
    are given a network."""

    path: Path
    fallback: str
    section: str
    fallback_loss: str
    _vgg: Vgg19Features | None = None
    _resolved: bool = False

    @property
    def mode(self) -> str:
        """``vgg19`` or ``l1`` (resolves the weights on first call)."""
        self._resolve()
        return "vgg19" if self._vgg is not None else "l1"

    def _resolve(self) -> None:
        if not self._resolved:
            self._vgg = resolve_vgg19(self.path, self.fallback, self.section, self.fallback_loss)
            self._resolved = True

    def vgg_for(self, like: torch.Tensor, match_dtype: bool = False) -> Vgg19Features | None:
        """The VGG (None in the fallback) on ``like``'s device (and, with ``match_dtype``, in its float32/float64
        dtype; under autocast it is left alone)."""
        self._resolve()
        vgg = self._vgg
        if vgg is None:
            return None
        reference = next(vgg.parameters())
        if reference.device != like.device:
            vgg.to(like.device)
        if match_dtype and reference.dtype != like.dtype and like.dtype in (torch.float32, torch.float64):
            vgg.to(like.dtype)
        return vgg


class PerceptualLoss(LazyVgg19):
    """``lamb_perception`` × the VGG19 perceptual loss, or × ``pixel_l1_loss`` when the weights are absent
    and ``perceptual_fallback: l1`` allows it. The VGG is loaded on first use and kept out of the model's
    state dict (it is not part of the models' checkpoints).

    ``options``: the model's config section (``lamb_perception``, ``vgg19_weights``, ``perceptual_fallback``),
    named ``section`` in messages.
    """

    def __init__(self, options: Mapping[str, Any], section: str):
        self.section = section
        self.weight = float(options["lamb_perception"])
        self.path = Path(options["vgg19_weights"]) if options["vgg19_weights"] else VGG19_WEIGHTS.default_path()
        self.fallback = str(options["perceptual_fallback"])
        if self.fallback not in PERCEPTUAL_FALLBACKS:
            raise ConfigError(f"{section}.perceptual_fallback must be one of {PERCEPTUAL_FALLBACKS}, "
                              f"got {self.fallback!r}")
        self.fallback_loss = "pixel L1 at full and half resolution"
        self._vgg: Vgg19Features | None = None
        self._resolved = False

    def __call__(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        vgg = self.vgg_for(fake)
        if vgg is None:
            return self.weight * pixel_l1_loss(fake, real)
        return self.weight * perceptual_loss(vgg, fake, real)

    def style(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The VGG19 Gram-matrix style loss (unweighted), or 0 in the L1 fallback (no VGG: no style statistics;
        the fallback's warning covers it)."""
        vgg = self.vgg_for(fake)
        if vgg is None:
            return fake.new_zeros(())
        return style_loss(vgg, fake, real)
