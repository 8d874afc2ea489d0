"""Training pieces shared by model plugins: GAN and sync losses, the discriminator step, the VGG19
perceptual loss, and stage settings for coarse-to-fine recipes. Not a model: it has no config of its own."""
from .losses import (PERCEPTUAL_FALLBACKS, PerceptualLoss, discriminator_loss, discriminator_step, lsgan,
                     pixel_l1_loss, sync_loss)
from .stages import STAGE_KINDS, StageSettings, default_stage, lr_factor, stage_kind, stage_settings
from .vgg import (PERCEPTUAL_LOSS_WEIGHT, VGG19_WEIGHTS, Vgg19Features, half_resolution_pair, perceptual_loss,
                  vgg19_feature_layers)

__all__ = ["PERCEPTUAL_FALLBACKS", "PERCEPTUAL_LOSS_WEIGHT", "STAGE_KINDS", "VGG19_WEIGHTS", "PerceptualLoss",
           "StageSettings", "Vgg19Features", "default_stage", "discriminator_loss", "discriminator_step",
           "half_resolution_pair", "lr_factor", "lsgan", "perceptual_loss", "pixel_l1_loss", "stage_kind",
           "stage_settings", "sync_loss", "vgg19_feature_layers"]
