"""The registered ``dinet`` model: DINet's networks, its staged training recipe and dubbing inference."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ...audio import feature_width
from ...dubbing import LOOP_OPTIONS, dub
from ...errors import ConfigError, DataError
from ...registry import AUDIO_FEATURES, register_model
from ...weights import KnownWeights
from ..base import TalkingFaceModel
from ..common import (PerceptualLoss, StageSettings, default_stage, discriminator_step, lr_factor, lsgan,
                      stage_settings, sync_loss)
from .data import DINetClipDataset, DINetFrameDataset
from .data.dataset import DINET_CROPS, CropStyle
from .dubbing import DINET_OPTIONS, DINetDubbing
from .networks import (OFFICIAL_NETWORKS, DINetNetworks, check_mouth_size, convert_dinet_checkpoint,
                       official_dinet_layout)
from .releases import RELEASES
from .syncnet_data import SyncNetPairDataset

logger = logging.getLogger(__name__)


def audio_width(config: Mapping[str, Any], section: str = "dinet", key: str = "audio_feature") -> int:
    """The audio encoders' input width for ``<section>.<key>`` (``frame_vectors`` rule)."""
    options = config[section]
    name = str(options[key])
    feature = AUDIO_FEATURES.get(name)(config)
    return feature_width(name, tuple(feature.frame_shape()), str(options["audio_reduction"]))


@register_model("dinet")
class DINet(TalkingFaceModel):
    """DINet (Zhang et al., AAAI 2023). See docs/dinet.md.

    ``generator(source (B,3,H,W), refs (B,15,H,W), audio (B,C,5))`` and ``syncnet(mouths (B,15,M,M),
    audio (B,C,9))`` are the official networks (C = 29 for DeepSpeech). Training follows ``self.stage``
    (``enter_stage``); without a stage the model trains the frame stage at ``dinet.mouth_region_size``.
    """

    # The defaults live in configs/model/dinet.yaml, which load_config layers in for the model "dinet".
    # A successor (LawDNet) subclasses it with its own section, networks, crops and optimizer.
    section = "dinet"
    crop_style: CropStyle = DINET_CROPS
    optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam
    default_dataset = "demo"
    releases = RELEASES
    smoke_config = {"demo": {"clips": 3}, "preprocess": {"features": ["mfcc"]},
                    "dinet": {"mouth_region_size": 64, "audio_feature": "mfcc"}}

    def __init__(self, config=None):
        super().__init__(config)
        self.options = self.config[self.section]
        self.audio_channels = audio_width(self.config, self.section)
        self.networks = self.build_networks()
        self.settings: StageSettings = default_stage(self.options, self.section, self.check_mouth)
        self.inference_mouth = int(self.options["mouth_region_size"])
        self._perceptual: PerceptualLoss | None = None

    # ---- the official networks ---------------------------------------------------------------
    check_mouth = staticmethod(check_mouth_size)

    def build_networks(self) -> torch.nn.Module:
        """The networks container: ``generator``, ``syncnet``, both discriminators, ``crop_mouth``."""
        return DINetNetworks(int(self.options["mouth_region_size"]), audio_channel=self.audio_channels)

    @property
    def generator(self) -> torch.nn.Module:
        return self.networks.generator

    @property
    def syncnet(self) -> torch.nn.Module:
        return self.networks.syncnet

    @property
    def frame_discriminator(self) -> torch.nn.Module:
        return self.networks.frame_discriminator

    @property
    def clip_discriminator(self) -> torch.nn.Module:
        return self.networks.clip_discriminator

    @property
    def stage(self) -> str:
        return self.settings.name

    @property
    def perceptual(self) -> PerceptualLoss:
        if self._perceptual is None:
            self._perceptual = PerceptualLoss(self.options, self.section)
        return self._perceptual

    def train(self, mode: bool = True) -> "DINet":
        super().train(mode)
        if self.settings.kind == "clip":
            self.networks.syncnet.eval()  # frozen lip-sync expert, as in train_DINet_clip.py
        return self

    # ---- stages ------------------------------------------------------------------------------
    def recipe(self) -> list[str]:
        return [str(name) for name in self.options["recipe"]]

    def enter_stage(self, stage: str, previous: Path | None) -> Mapping[str, Any]:
        """Switch to ``stage``, load ``previous`` (ours or an official release: the networks it holds) and
        return the stage's ``train`` overrides (epochs, batch size)."""
        settings = stage_settings(stage, self.options, self.section, self.check_mouth)
        if previous is not None:
            self.load_checkpoint(previous)
        self.settings = settings
        self.networks.mouth_region_size = settings.mouth
        if settings.kind != "syncnet":
            self.inference_mouth = settings.mouth
        logger.info("%s stage %s: mouth %d, augment_num %d", type(self).__name__, stage, settings.mouth,
                    settings.augment_num)
        return settings.overrides()

    # ---- data --------------------------------------------------------------------------------
    def build_dataset(self, store: Any, split: str) -> Dataset | None:
        kind = self.settings.kind
        cls = {"syncnet": SyncNetPairDataset, "frame": DINetFrameDataset, "clip": DINetClipDataset}[kind]
        train = split == "train"
        try:
            data = cls(store, split, self.settings.mouth, audio_feature=str(self.options["audio_feature"]),
                       augment_num=self.settings.augment_num if train else 1,
                       seed=None if train else int(self.options["seed"]), cache_dir=self.options["cache_dir"],
                       crop_seed=int(self.options["crop_seed"]), audio_reduction=str(self.options["audio_reduction"]),
                       style=self.crop_style, sync_feature=self.options.get("sync_audio_feature"))
        except DataError as exc:
            if train:
                raise
            logger.warning("%s %s stage: no validation on split %r (%s)", type(self).__name__, self.stage, split, exc)
            return None
        if data.audio_channels != self.audio_channels:
            raise DataError(f"{store.root}: feature {self.options['audio_feature']!r} is {data.audio_channels} wide, "
                            f"the model's audio encoders take {self.audio_channels}")
        return data

    # ---- optimisation ------------------------------------------------------------------------
    def _trained_networks(self) -> dict[str, torch.nn.Module]:
        nets = self.networks
        if self.settings.kind == "syncnet":
            return {"syncnet": nets.syncnet}
        trained = {"generator": nets.generator, "frame_discriminator": nets.frame_discriminator}
        if self.settings.kind == "clip":
            trained["clip_discriminator"] = nets.clip_discriminator
        return trained

    def configure_optimizers(self) -> dict[str, Any]:
        if self.settings.kind != "syncnet" and self.settings.mouth < 64:
            raise ConfigError(f"{type(self).__name__} stage {self.stage}: the discriminators need mouth_region_size >= 64, "
                              f"got {self.settings.mouth}")
        lr = float(self.options["lr"])
        non_decay, decay = self.settings.non_decay, self.settings.decay
        optimizers = {name: self.optimizer_class(net.parameters(), lr=lr)
                      for name, net in self._trained_networks().items()}
        schedulers = {name: torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: lr_factor(epoch, non_decay, decay))
                      for name, opt in optimizers.items()}
        return {"optimizers": optimizers, "schedulers": schedulers}

    def training_step(self, batch: dict, step: int) -> dict[str, float]:
        kind = self.settings.kind
        if kind == "syncnet":
            return self._syncnet_step(batch)
        if kind == "clip":
            return self._clip_step(batch)
        return self._frame_step(batch)

    def _frame_step(self, batch: dict) -> dict[str, float]:
        """train_DINet_frame.py: D_I (LSGAN) then G = perception + MSE(D_I(fake), 1)."""
        nets = self.networks
        source = batch["source"]
        with self.autocast():
            fake = nets.generator(batch["source_masked"], batch["refs"], batch["audio"])
        d_loss = discriminator_step(self, "frame_discriminator", nets.frame_discriminator, fake, source)
        with self.frozen(nets.frame_discriminator):
            with self.autocast():
                perception = self.perceptual(fake, source)
                gan = self._weight("lamb_gan_i") * lsgan(nets.frame_discriminator(fake)[1], True)
                image = self._image_loss(fake, source)
                loss = perception + gan + image
            self.backward(loss)
        self.optimizer_step(self.optimizers["generator"])
        return {"loss": loss.item(), "perception": perception.item(), "gan_i": gan.item(), "d_i": d_loss.item(),
                **self._image_scalar(image)}

    def _weight(self, key: str, default: float = 1.0) -> float:
        """A loss weight of the model's section (DINet's config has no ``lamb_img`` or GAN weights: 0 and 1)."""
        return float(self.options.get(key, default))

    def _image_loss(self, fake: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """``lamb_img`` × MSE(fake, source): LawDNet's pixel loss; 0 for DINet (not computed)."""
        weight = self._weight("lamb_img", 0.0)
        return weight * F.mse_loss(fake, source) if weight else fake.new_zeros(())

    def _image_scalar(self, image: torch.Tensor) -> dict[str, float]:
        return {"img": image.item()} if self._weight("lamb_img", 0.0) else {}

    @staticmethod
    def _frames(x: torch.Tensor) -> torch.Tensor:
        """(B, 5, ...) -> (5B, ...) frame-major, like the release's ``cat(split(x, 1, dim=1), 0)``."""
        return x.transpose(0, 1).reshape(-1, *x.shape[2:])

    @staticmethod
    def _clips(y: torch.Tensor, batch: int) -> torch.Tensor:
        """(5B, 3, H, W) frame-major -> (B, 15, H, W), like ``cat(split(y, B, 0), 1)``."""
        return y.reshape(-1, batch, *y.shape[1:]).transpose(0, 1).reshape(batch, -1, *y.shape[2:])

    def _clip_step(self, batch: dict) -> dict[str, float]:
        """train_DINet_clip.py: D_I, D_V, then G = perception + GAN_I + GAN_V + 0.1 MSE(SyncNet(mouths), 1)."""
        nets = self.networks
        size = batch["source"].shape[0]
        source = self._frames(batch["source"])
        with self.autocast():
            fake = nets.generator(self._frames(batch["masked"]), self._frames(batch["refs"]),
                                  self._frames(batch["audio"]))
        fake_clip, real_clip = self._clips(fake, size), self._clips(source, size)
        d_i = discriminator_step(self, "frame_discriminator", nets.frame_discriminator, fake, source)
        d_v = discriminator_step(self, "clip_discriminator", nets.clip_discriminator, fake_clip, real_clip)
        with self.frozen(nets.frame_discriminator, nets.clip_discriminator, nets.syncnet):
            with self.autocast():
                perception = self.perceptual(fake, source)
                gan_i = self._weight("lamb_gan_i") * lsgan(nets.frame_discriminator(fake)[1], True)
                gan_v = self._weight("lamb_gan_v") * lsgan(nets.clip_discriminator(fake_clip)[1], True)
                sync = float(self.options["lamb_syncnet"]) * sync_loss(
                    nets.syncnet(nets.crop_mouth(fake_clip), batch["audio_full"]), True)
                image = self._image_loss(fake, source)
                loss = perception + gan_i + gan_v + sync + image
            self.backward(loss)
        self.optimizer_step(self.optimizers["generator"])
        return {"loss": loss.item(), "perception": perception.item(), "gan_i": gan_i.item(), "gan_v": gan_v.item(),
                "sync": sync.item(), "d_i": d_i.item(), "d_v": d_v.item(), **self._image_scalar(image)}

    def _syncnet_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        net = self.networks.syncnet
        with self.autocast():
            positive = sync_loss(net(batch["mouths"], batch["audio"]), True)
            negative = sync_loss(net(batch["mouths"], batch["audio_off"]), False)
        return 0.5 * (positive + negative), positive, negative

    def _syncnet_step(self, batch: dict) -> dict[str, float]:
        """Our SyncNet objective: MSE of the score map to 1 (own audio) and 0 (audio >= 9 frames away)."""
        loss, positive, negative = self._syncnet_loss(batch)
        self.backward(loss)
        self.optimizer_step(self.optimizers["syncnet"])
        return {"loss": loss.item(), "sync_pos": positive.item(), "sync_neg": negative.item()}

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, float]:
        """L1 of the generated face (frame/clip stages); the SyncNet loss (syncnet stage)."""
        kind = self.settings.kind
        if kind == "syncnet":
            loss, positive, negative = self._syncnet_loss(batch)
            return {"loss": loss.item(), "sync_pos": positive.item(), "sync_neg": negative.item()}
        if kind == "clip":
            source, masked = self._frames(batch["source"]), self._frames(batch["masked"])
            refs, audio = self._frames(batch["refs"]), self._frames(batch["audio"])
        else:
            source, masked, refs, audio = batch["source"], batch["source_masked"], batch["refs"], batch["audio"]
        with self.autocast():
            fake = self.networks.generator(masked, refs, audio)
        return {"loss": F.l1_loss(fake.float(), source).item()}

    # ---- checkpoints -------------------------------------------------------------------------
    def convert_official_checkpoint(self, checkpoint: Any, source: str) -> dict[str, dict[str, torch.Tensor]] | None:
        """``{"networks.generator": state_dict, ...}`` for the networks an official file holds (releases.py)."""
        if official_dinet_layout(checkpoint) is None:
            return None
        return {f"networks.{name}": state for name, state in convert_dinet_checkpoint(checkpoint, source).items()}

    def release_example(self, release: KnownWeights) -> dict:
        """``release`` in the official layout (``state_dict`` entries by network, DataParallel's ``module.``
        prefix on the training files), holding this model's current weights."""
        entry = {network: name for name, network in OFFICIAL_NETWORKS.items()}
        prefix = "" if release.fills == ("networks.syncnet",) else "module."
        nets = {entry[fill.split(".", 1)[1]]: {prefix + k: v for k, v in self.get_submodule(fill).state_dict().items()}
                for fill in release.fills}
        return {"epoch": 160, "state_dict": nets} if prefix else {"state_dict": nets}

    # ---- inference ---------------------------------------------------------------------------
    generate_options = (*LOOP_OPTIONS, *DINET_OPTIONS)

    @classmethod
    def benchmark_config(cls, work: Path) -> dict:
        """MFCC rows instead of DeepSpeech's (its weights are a download): the generator's audio encoder takes
        52 values per frame instead of 29, < 0.1 % of its FLOPs."""
        return {cls.section: {"audio_feature": "mfcc"}}

    def dubbing_hooks(self, paste: str | None = None, feather: float | None = None, **_: Any) -> DINetDubbing:
        return DINetDubbing(self, paste, feather)

    def generate(self, source_video: str | Path, audio: str | Path, output: str | Path, **options: Any) -> Path:
        """Dub ``source_video`` with ``audio`` through the shared loop (docs/dinet.md, inference); options:
        ``generate_options`` (``fps``, ``face``, ``batch``, ``paste``, ``feather``), ``seed`` and ``progress``."""
        return dub(self.dubbing_hooks(**options), source_video, audio, output, DINET_OPTIONS, **options)
