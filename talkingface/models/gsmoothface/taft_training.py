"""Training of TAFT (GSmoothFace's target-adaptive face translation, :class:`TaftGenerator`): the released trainer's
objective, its EMA generator and its optimiser, plus an optional GAN term of ours.

What the release does (zhanghm1995/GSmoothFace_TAFT at 999d1f5; the authors' README never describes the training step):

- ``trainers/face_to_face_trainer.py: Face2FaceTrainer.optimize_parameters``: ``fake = net_G(reference_image,
  blended_image)['fake_image']``, ``gen_losses = {'perceptual_final': 4 · P(fake, source_image), 'l1_loss': 1 ·
  L1(fake, source_image)}``, ``total_loss`` their sum in that order, ``net_G.zero_grad()``, backward, ``opt_G.step()``,
  then ``accumulate(net_G_ema, net_G, 0.5 ** (32 / (10 * 1000)))``. No discriminator, no GAN term.
- ``P`` is PIRender's (imaginaire's) ``loss/perceptual.py: PerceptualLoss`` as ``config/face_to_face_HDTF.yaml`` sets
  it: ``network: vgg19``, layers relu_1_1, relu_2_1, relu_3_1, relu_4_1, relu_5_1 (``weights`` not given: 1 each),
  ``num_scales: 4``, ``criterion`` l1 (the default), ``use_style_loss: True``, ``style_to_perceptual: 250``:
  :func:`pirender_perceptual_loss`.
- ``util/trainer.py``: ``accumulate`` (parameters only, buffers never), the EMA copy made by ``accumulate(ema, net_G,
  0)`` at start, weights initialised N(0, 0.02) (``trainer.init``), Adam and StepLR from ``gen_optimizer``
  (``iteration_mode: True``: ``sch_G.step()`` after every iteration, ``trainers/base.py: end_of_iteration``).

Ours (the release is silent, or has no such thing): the perceptual fallback when VGG19's weights are absent (as
``talkingface.models.common.losses.PerceptualLoss``: ``perceptual_fallback: l1 | error``), and the GAN term
(``weight_gan``, default 0: with 0 the objective and the update are exactly the released trainer's).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ...errors import ConfigError
from ..common.losses import PERCEPTUAL_FALLBACKS, LazyVgg19, discriminator_loss, lsgan
from ..common.vgg import VGG19_WEIGHTS, gram_matrix


# imaginaire's ``_vgg19`` layer_name_mapping: index in torchvision's ``vgg19().features`` -> name.
PIRENDER_VGG19_LAYERS: dict[str, int] = {
    "relu_1_1": 1, "relu_1_2": 3, "relu_2_1": 6, "relu_2_2": 8, "relu_3_1": 11, "relu_3_2": 13, "relu_3_3": 15,
    "relu_3_4": 17, "relu_4_1": 20, "relu_4_2": 22, "relu_4_3": 24, "relu_4_4": 26, "relu_5_1": 29}
TAFT_VGG_LAYERS: tuple[str, ...] = ("relu_1_1", "relu_2_1", "relu_3_1", "relu_4_1", "relu_5_1")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EMA_DECAY: float = 0.5 ** (32 / (10 * 1000))
"""``Face2FaceTrainer.accum``: 0.99778..., the EMA generator keeps this much of itself per iteration."""


@dataclass(frozen=True)
class TaftLossConfig:
    """The objective. Defaults: ``face_to_face_HDTF.yaml`` / ``face_to_face_trainer.py`` except where marked ours.

    ``weight_gan`` defaults to 0 because the only published TAFT weights were trained without a GAN term and the
    release gives no value: 0 reproduces the released trainer exactly (no discriminator is built or run). To use it,
    a value near 1 (pix2pixHD's and SPADE's GAN weight next to their ×10 VGG term) keeps the LSGAN term, O(0.1–1),
    well below the ×4 perceptual term (a sum over 4 scales × 5 layers plus ×250 style).
    """

    weight_perceptual_final: float = 4.0  # trainer.loss_weight.weight_perceptual_final
    weight_l1: float = 1.0  # Face2FaceTrainer._init_loss: self.weights['l1_loss'] = 1.0
    layers: tuple[str, ...] = TAFT_VGG_LAYERS  # trainer.vgg_param_final.layers
    layer_weights: tuple[float, ...] | None = None  # not in the config: PerceptualLoss gives 1.0 per layer
    num_scales: int = 4  # vgg_param_final.num_scales
    criterion: str = "l1"  # PerceptualLoss default
    use_style_loss: bool = True  # vgg_param_final.use_style_loss
    style_to_perceptual: float = 250.0  # vgg_param_final.style_to_perceptual
    weight_gan: float = 0.0  # ours: 0 = the released trainer exactly
    perceptual_fallback: str = "l1"  # ours, as the toolkit's PerceptualLoss: l1 | error
    vgg19_weights: str | None = None  # ours: None = checkpoints/vgg19-dcbb9e9d.pth

    def __post_init__(self) -> None:
        unknown = [name for name in self.layers if name not in PIRENDER_VGG19_LAYERS]
        if unknown:
            raise ConfigError(f"TAFT perceptual layers {unknown} are not VGG19 layers {list(PIRENDER_VGG19_LAYERS)}")
        if self.layer_weights is not None and len(self.layer_weights) != len(self.layers):
            raise ConfigError(f"{len(self.layer_weights)} layer weights for {len(self.layers)} layers")
        if self.num_scales < 1:
            raise ConfigError(f"num_scales must be >= 1, got {self.num_scales}")
        if self.criterion not in ("l1", "l2", "mse"):
            raise ConfigError(f"criterion must be l1, l2 or mse, got {self.criterion!r}")
        if self.perceptual_fallback not in PERCEPTUAL_FALLBACKS:
            raise ConfigError(f"perceptual_fallback must be one of {PERCEPTUAL_FALLBACKS}, "
                              f"got {self.perceptual_fallback!r}")


@dataclass(frozen=True)
class TaftOptimConfig:
    """Optimiser, schedule, EMA, initialisation and batch of the release (``face_to_face_HDTF.yaml``, ``train.py``,
    ``util/trainer.py``); ``d_*`` are ours (the discriminator of the optional GAN term)."""

    lr: float = 1e-4  # gen_optimizer.lr
    betas: tuple[float, float] = (0.5, 0.999)  # adam_beta1, adam_beta2
    lr_step_size: int = 300_000  # lr_policy.step_size (in iterations: iteration_mode True)
    lr_gamma: float = 0.2  # lr_policy.gamma
    scheduler_per_iteration: bool = True  # lr_policy.iteration_mode
    batch_size: int = 10  # data.train.batch_size (shuffle, drop_last)
    val_batch_size: int = 8  # data.val.batch_size
    max_epoch: int = 200  # max_epoch
    ema_decay: float = EMA_DECAY  # Face2FaceTrainer.accum
    init_gain: float = 0.02  # trainer.init: normal, gain 0.02 (biases 0)
    seed: int = 0  # train.py --seed default
    d_lr: float = 1e-4  # ours: the generator's
    d_betas: tuple[float, float] = (0.5, 0.999)  # ours: the generator's


# ---- PIRender's perceptual loss ------------------------------------------------------------------------------------
def imagenet_normalize_signed(images: torch.Tensor) -> torch.Tensor:
    """imaginaire's ``apply_imagenet_normalization``: [-1, 1] images to [0, 1], then ``(x - mean) / std``."""
    unit = (images + 1) / 2
    mean = unit.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = unit.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (unit - mean) / std


def halve(images: torch.Tensor) -> torch.Tensor:
    """The release's downsampling between scales: bilinear, ``scale_factor=0.5``, ``align_corners=False``,
    ``recompute_scale_factor=True`` (output ``floor(size / 2)``)."""
    return F.interpolate(images, mode="bilinear", scale_factor=0.5, align_corners=False, recompute_scale_factor=True)


def _pools_before(features: nn.Sequential, index: int) -> int:
    return sum(isinstance(features[i], nn.MaxPool2d) for i in range(index))


def vgg19_named_features(vgg: nn.Module, normalized: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The outputs of ``layers`` (imaginaire names) of ``vgg.features`` (torchvision's layout) on already normalised
    images. Only the modules up to the deepest requested layer run (the release runs all 37: same outputs)."""
    wanted = {PIRENDER_VGG19_LAYERS[name]: name for name in layers}
    out, outputs = normalized, {}
    for index in range(max(wanted) + 1):
        out = vgg.features[index](out)
        if index in wanted:
            outputs[wanted[index]] = out
    return outputs


def check_perceptual_size(vgg: nn.Module, height: int, width: int, layers: tuple[str, ...], num_scales: int) -> None:
    """Raise ValueError when the smallest scale is too small for the deepest layer's max poolings (the release
    fails inside VGG's pooling instead; it also runs VGG's last pooling, so it needs twice this size)."""
    pools = _pools_before(vgg.features, max(PIRENDER_VGG19_LAYERS[name] for name in layers))
    h, w = height, width
    for _ in range(num_scales - 1):
        h, w = h // 2, w // 2
    if min(h, w) < 2 ** pools:
        raise ValueError(f"TAFT perceptual loss: {height}x{width} images at {num_scales} scales end at {h}x{w}, "
                         f"below the {2 ** pools}x{2 ** pools} that {max(layers, key=PIRENDER_VGG19_LAYERS.get)} "
                         f"needs ({pools} poolings); use images of at least {2 ** (pools + num_scales - 1)} pixels "
                         f"or fewer scales")


def pirender_perceptual_loss(vgg: nn.Module, fake: torch.Tensor, real: torch.Tensor, *,
                             layers: tuple[str, ...] = TAFT_VGG_LAYERS, layer_weights: tuple[float, ...] | None = None,
                             num_scales: int = 4, criterion: str = "l1", use_style_loss: bool = True,
                             style_to_perceptual: float = 250.0) -> torch.Tensor:
    """imaginaire's ``PerceptualLoss(...)(fake, real)`` (no mask, no resize, no instance norm), unweighted.

    Both [-1, 1] images are ImageNet-normalised once; at each of ``num_scales`` scales the VGG19 features of both are
    compared with ``criterion`` (mean) per layer, times the layer weight, and summed; at scale 0 only, the L1/MSE of
    their Gram matrices (``C·H·W``-normalised) is summed over the layers (unweighted). Between scales both normalised
    images are halved (:func:`halve`). Returns ``perceptual + style_to_perceptual · style`` (``perceptual`` alone
    without the style loss). ``real``'s features are detached (computed without autograd).
    """
    weights = (1.0,) * len(layers) if layer_weights is None else tuple(layer_weights)
    distance = F.l1_loss if criterion == "l1" else F.mse_loss
    check_perceptual_size(vgg, fake.shape[-2], fake.shape[-1], layers, num_scales)
    inp, target = imagenet_normalize_signed(fake), imagenet_normalize_signed(real)
    loss: torch.Tensor | float = 0
    style: torch.Tensor | float = 0
    for scale in range(num_scales):
        fake_features = vgg19_named_features(vgg, inp, layers)
        with torch.no_grad():
            real_features = vgg19_named_features(vgg, target, layers)
        for name, weight in zip(layers, weights):
            loss = loss + weight * distance(fake_features[name], real_features[name])
            if use_style_loss and scale == 0:
                style = style + distance(gram_matrix(fake_features[name]), gram_matrix(real_features[name]))
        if scale != num_scales - 1:
            inp, target = halve(inp), halve(target)
    return loss + style * style_to_perceptual if use_style_loss else loss  # type: ignore[return-value]


def multiscale_pixel_loss(fake: torch.Tensor, real: torch.Tensor, num_scales: int = 4,
                          criterion: str = "l1") -> torch.Tensor:
    """The fallback of the perceptual term without VGG19 weights (ours): the mean over the perceptual loss's
    ``num_scales`` scales (the same :func:`halve` pyramid) of the pixel L1 (MSE for l2/mse) of the [-1, 1] images.
    No style term (no VGG, no style statistics)."""
    distance = F.l1_loss if criterion == "l1" else F.mse_loss
    total = distance(fake, real)
    for _ in range(num_scales - 1):
        fake, real = halve(fake), halve(real)
        total = total + distance(fake, real)
    return total / num_scales


# ---- the objective -------------------------------------------------------------------------------------------------
class TaftPatchDiscriminator(nn.Module):
    """Ours (the release has no discriminator): a conditional PatchGAN on ``cat(blended, image)`` (6 channels), or
    on ``image`` alone with ``conditional=False``.

    Conditioning on the blended frame lets it judge whether the output agrees with the pasted 3DMM mouth, not only
    whether it looks real (pix2pix's argument); the reference frame is left out (a real pair always matches it).
    pix2pix's layout without normalisation layers and with spectral norm on every conv, so that it does not depend on
    the batch size (the release trains with 10): 4×4 convs, stride 2 to ``ndf``, ``n_layers - 1`` more stride-2 ones
    doubling up to ``8·ndf``, a stride-1 one, LeakyReLU(0.2) after each, and a stride-1 conv to one logit per patch
    (``H/8 - 2`` for ``n_layers=3``; 70×70 receptive field).
    """

    def __init__(self, image_nc: int = 3, ndf: int = 64, n_layers: int = 3, conditional: bool = True) -> None:
        super().__init__()
        self.conditional = conditional
        in_channels = 2 * image_nc if conditional else image_nc
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(in_channels, ndf, 4, 2, 1)), nn.LeakyReLU(0.2)]
        width = ndf
        for n in range(1, n_layers + 1):
            previous, width = width, ndf * min(2 ** n, 8)
            layers += [spectral_norm(nn.Conv2d(previous, width, 4, 2 if n < n_layers else 1, 1)), nn.LeakyReLU(0.2)]
        layers.append(spectral_norm(nn.Conv2d(width, 1, 4, 1, 1)))
        self.model = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, blended: torch.Tensor | None = None) -> torch.Tensor:
        """Raw LSGAN logits per patch of ``image`` (conditioned on ``blended`` when ``conditional``)."""
        if self.conditional:
            if blended is None:
                raise ValueError("the conditional TAFT discriminator needs the blended image")
            image = torch.cat([blended, image], 1)
        return self.model(image)


class TaftLoss(LazyVgg19):
    """The released TAFT objective, ``4 · P(fake, target) + 1 · L1(fake, target)`` (:class:`TaftLossConfig`), plus
    ``weight_gan · LSGAN(D(fake))`` when ``weight_gan > 0`` (ours).

    ``vgg``: a feature network in torchvision's ``features.*`` layout (e.g. a :class:`Vgg19Features`); when None,
    ImageNet VGG19 is loaded from ``config.vgg19_weights`` (``checkpoints/vgg19-dcbb9e9d.pth``) on first use. When
    that file is absent, ``perceptual_fallback`` decides: ``error`` raises CheckpointError, ``l1`` warns once and uses
    :func:`multiscale_pixel_loss` instead of ``P`` (as the toolkit's ``PerceptualLoss``). The VGG is not part of the
    generator's state dict. ``section`` names the config section in messages.
    """

    def __init__(self, config: TaftLossConfig | None = None, vgg: nn.Module | None = None,
                 section: str = "gsmoothface") -> None:
        self.config = config or TaftLossConfig()
        self.section = section
        self.path = Path(self.config.vgg19_weights) if self.config.vgg19_weights else VGG19_WEIGHTS.default_path()
        self.fallback = self.config.perceptual_fallback
        self.fallback_loss = f"pixel L1 over the loss's {self.config.num_scales} scales, no style term"
        self._vgg = vgg
        self._resolved = vgg is not None
        if vgg is not None:
            vgg.requires_grad_(False)

    def perceptual(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The unweighted perceptual term ``P`` (:func:`pirender_perceptual_loss`), or the fallback."""
        cfg = self.config
        vgg = self.vgg_for(fake, match_dtype=True)
        if vgg is None:
            return multiscale_pixel_loss(fake, real, cfg.num_scales, cfg.criterion)
        return pirender_perceptual_loss(vgg, fake, real, layers=cfg.layers, layer_weights=cfg.layer_weights,
                                        num_scales=cfg.num_scales, criterion=cfg.criterion,
                                        use_style_loss=cfg.use_style_loss, style_to_perceptual=cfg.style_to_perceptual)

    def generator_losses(self, fake: torch.Tensor, real: torch.Tensor, blended: torch.Tensor | None = None,
                         discriminator: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """The weighted terms under the release's keys, ``perceptual_final`` and ``l1_loss`` (then ``gan`` when
        ``weight_gan > 0``), and ``total_loss``, their sum in that order."""
        cfg = self.config
        losses = {"perceptual_final": self.perceptual(fake, real) * cfg.weight_perceptual_final,
                  "l1_loss": F.l1_loss(fake, real) * cfg.weight_l1}
        if cfg.weight_gan > 0:
            if discriminator is None:
                raise ValueError(f"{self.section}: weight_gan = {cfg.weight_gan} needs a discriminator")
            losses["gan"] = lsgan(discriminator(fake, blended), True) * cfg.weight_gan
        total: torch.Tensor | float = 0
        for value in losses.values():
            total = total + value
        losses["total_loss"] = total  # type: ignore[assignment]
        return losses


# ---- EMA, initialisation, optimiser ----------------------------------------------------------------------------------
def _unwrap(module: nn.Module) -> nn.Module:
    if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return module.module
    return module


def accumulate_ema(ema: nn.Module, generator: nn.Module, decay: float = EMA_DECAY) -> None:
    """The release's ``util/trainer.py: accumulate``: for every parameter of ``ema`` (by name),
    ``ema ← ema · decay + generator · (1 − decay)`` in place. Buffers are neither averaged nor copied. ``decay=0``
    copies the parameters (how the release starts its EMA generator). DDP/DataParallel wrappers are unwrapped."""
    source = dict(_unwrap(generator).named_parameters())
    with torch.no_grad():
        for name, param in _unwrap(ema).named_parameters():
            param.mul_(decay).add_(source[name].detach(), alpha=1 - decay)


def make_ema_generator(generator: nn.Module) -> nn.Module:
    """The EMA generator at the start of training: a copy of ``generator`` (its parameters, as the release's
    ``accumulate(net_G_ema, net_G, 0)`` after building a second network; TAFT has no buffers) in eval mode, without
    gradients. Update it with :func:`accumulate_ema` after every optimiser step, from the first one on (no warm-up);
    inference uses it (``net_G_ema`` of the checkpoint)."""
    ema = copy.deepcopy(_unwrap(generator))
    ema.eval().requires_grad_(False)
    return ema


def init_taft_weights_(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """The release's ``weights_init('normal', 0.02)`` applied with ``module.apply``: every module whose class name
    contains Conv, Linear or Embedding and has a ``weight`` gets weights N(0, gain²) and zero biases; LayerNorm2d
    keeps ones/zeros. Draws from torch's global generator (the release seeds it with 0). Returns ``module``."""

    def init(m: nn.Module) -> None:
        name = m.__class__.__name__
        if getattr(m, "weight", None) is not None and any(kind in name for kind in ("Conv", "Linear", "Embedding")):
            nn.init.normal_(m.weight.data, 0.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias.data, 0.0)

    return module.apply(init)


def build_optimizer(generator: nn.Module, config: TaftOptimConfig | None = None
                    ) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.StepLR]:
    """The release's Adam over all of ``generator``'s parameters (the unused mapping net's included: they never get
    gradients, so Adam leaves them alone) and its StepLR; step the scheduler once per iteration."""
    cfg = config or TaftOptimConfig()
    optimizer = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=cfg.betas)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step_size, gamma=cfg.lr_gamma)


def build_discriminator_optimizer(discriminator: nn.Module, config: TaftOptimConfig | None = None
                                  ) -> torch.optim.Adam:
    """Ours: Adam for the optional discriminator (``d_lr``, ``d_betas``: the generator's settings), constant rate."""
    cfg = config or TaftOptimConfig()
    return torch.optim.Adam(discriminator.parameters(), lr=cfg.d_lr, betas=cfg.d_betas)


CHECKPOINT_NAME = "epoch_{epoch:05}_iteration_{iteration:09}_checkpoint.pt"
"""The release's checkpoint file name (``trainers/base.py: _save_checkpoint``)."""


def release_checkpoint(generator: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                       epoch: int, iteration: int) -> dict[str, Any]:
    """The release's checkpoint dict ``{net_G, net_G_ema, opt_G, sch_G, current_epoch, current_iteration}`` (save
    it under :data:`CHECKPOINT_NAME`); inference reads ``net_G_ema``. DDP wrappers are unwrapped (no ``module.``)."""
    return {"net_G": _unwrap(generator).state_dict(), "net_G_ema": _unwrap(ema).state_dict(),
            "opt_G": optimizer.state_dict(), "sch_G": scheduler.state_dict(), "current_epoch": int(epoch),
            "current_iteration": int(iteration)}


def taft_train_step(generator: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer, loss: TaftLoss,
                    batch: Mapping[str, torch.Tensor], *, scheduler: Any = None, ema_decay: float = EMA_DECAY,
                    discriminator: nn.Module | None = None, d_optimizer: torch.optim.Optimizer | None = None
                    ) -> dict[str, float]:
    """One iteration of the released trainer on ``batch`` (``reference_image``, ``blended_image``,
    ``source_image``, all (B, 3, H, W) in [-1, 1]; the target is ``source_image``): forward in train mode, the
    weighted losses, ``zero_grad``, backward, optimiser step, EMA update, then ``scheduler.step()`` (the release's
    ``end_of_iteration``). With ``weight_gan > 0`` (ours) the discriminator is frozen during the generator's backward
    and then takes one LSGAN step on the detached output (``0.5·[MSE(D(fake), 0) + MSE(D(real), 1)]``, key
    ``discriminator``). Returns the losses as floats."""
    reference, blended, real = batch["reference_image"], batch["blended_image"], batch["source_image"]
    use_gan = loss.config.weight_gan > 0
    if use_gan and (discriminator is None or d_optimizer is None):
        raise ValueError("weight_gan > 0 needs a discriminator and its optimiser")
    disc = discriminator if use_gan else None
    generator.train()
    if disc is not None:
        disc.requires_grad_(False)
    fake = generator(reference, blended)
    losses = loss.generator_losses(fake, real, blended, disc)
    generator.zero_grad()
    losses["total_loss"].backward()
    optimizer.step()
    accumulate_ema(ema, generator, ema_decay)
    result = {key: float(value.detach()) for key, value in losses.items()}
    if disc is not None and d_optimizer is not None:
        disc.requires_grad_(True)
        d_loss = discriminator_loss(disc(fake.detach(), blended), disc(real, blended))
        d_optimizer.zero_grad()
        d_loss.backward()
        d_optimizer.step()
        result["discriminator"] = float(d_loss.detach())
    if scheduler is not None:
        scheduler.step()
    return result
