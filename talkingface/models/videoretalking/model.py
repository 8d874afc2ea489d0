"""The registered ``videoretalking`` model: the three released networks, the Wav2Lip-style training the authors never
published (SyncNet expert, L-Net, E-Net on a frozen L-Net) and in-process dubbing through the shared loop
(docs/videoretalking.md)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ...dubbing import LOOP_OPTIONS, dub
from ...errors import ConfigError, DataError
from ...registry import register_model
from ...weights import KnownWeights
from ..base import TalkingFaceModel
from ..common import PerceptualLoss
from .data import WINDOW, LNetWindows, SyncWindows, sync_faces
from .dubbing import VIDEORETALKING_OPTIONS, VideoReTalkingDubbing
from .networks import DNet, ENet, LNet
from .networks.enet import SCALE as ENET_SCALE
from .networks.convert import RELEASE_FILES, convert_release, release_kind
from .networks.wav2lip import QualityDiscriminator, SyncNetExpert, sync_bce
from .releases import DNET, ENET, LNET, RELEASES

logger = logging.getLogger(__name__)

STAGES = ("syncnet", "lnet", "enet", "dnet")


@register_model("videoretalking")
class VideoReTalking(TalkingFaceModel):
    """VideoReTalking (Cheng et al., SIGGRAPH Asia 2022; OpenTalker/video-retalking). See docs/videoretalking.md.

    ``lnet(audio (B,1,80,16), face (B,6,96,96)) -> (B,3,96,96)``, ``enet(audio, face (B,6,384,384), ref
    (B,3,384,384)) -> (out, low_res)`` around ``lnet`` and ``dnet(image (B,3,256,256), driving (B,73,26))`` are the
    released networks (``load_checkpoint`` takes LNet.pth, ENet.pth and DNet.pt by content). Training: the stages
    ``syncnet`` (Wav2Lip's expert on the lower halves), ``lnet`` (Wav2Lip's recipe), ``enet`` (frozen L-Net) and
    ``dnet`` (PIRender-style fine-tuning of D-Net on pairs of the same clip).
    """

    section = "videoretalking"
    default_dataset = "demo"
    releases = RELEASES
    smoke_config = {"demo": {"clips": 3}, "preprocess": {"features": ["mel"]},
                    "videoretalking": {"lnet": {"base_nc": 8, "max_nc": 64, "num_res_blocks": 1, "descriptor_nc": 32},
                                       "syncnet_width": 0.0625, "discriminator_width": 0.0625, "enet_width": 0.03125, "enet": False,
                                       "reference": "frame", "recipe": ["lnet"], "enhance": "none"}}

    def __init__(self, config=None):
        super().__init__(config)
        self.options = opts = self.config[self.section]
        if str(opts["audio_feature"]) != "mel":
            raise ConfigError(f"videoretalking.audio_feature must be 'mel' (Wav2Lip's mel chunks), got "
                              f"{opts['audio_feature']!r}")
        self.lnet_size = int(opts["lnet_size"])
        if self.lnet_size < 72:
            raise ConfigError(f"videoretalking.lnet_size must be >= 72 (the SyncNet expert and the quality "
                              f"discriminator end in 3x3 convolutions), got {self.lnet_size}")
        lnet = {k: int(v) for k, v in dict(opts["lnet"]).items()}
        if lnet["max_nc"] < lnet["base_nc"] * 2 ** lnet["layer"]:
            raise ConfigError(f"videoretalking.lnet: max_nc must be >= base_nc * 2^layer (the cross-attention at the "
                              f"last level takes the uncapped width), got {lnet}")
        self.lnet = LNet(**lnet)
        self.enet = ENet(noise=str(opts["enet_noise"]), width=float(opts["enet_width"]))
        self.enet.__dict__["low_res"] = self.lnet  # E-Net runs this L-Net; its state stays under ``lnet.*`` only
        self.dnet = DNet()
        self.syncnet = SyncNetExpert(float(opts["syncnet_width"]))
        self.quality = QualityDiscriminator(float(opts["discriminator_width"]))
        self.enet_quality = QualityDiscriminator(float(opts["discriminator_width"]))
        self.stage = "lnet"
        self.sync_weight = float(opts["syncnet_wt_start"])
        self._sync_average: float | None = None
        self._perceptual: PerceptualLoss | None = None
        if opts["release_dir"]:
            self.load_releases(opts["release_dir"])
        if bool(opts["timing_networks"]):  # random networks for timing: said at every build (timing.py)
            from .timing import warn_timing_networks

            warn_timing_networks(opts["checkpoint_dir"])

    # ---- releases ------------------------------------------------------------------------------
    def load_releases(self, folder: str | Path) -> list[Path]:
        """Load each of LNet.pth, ENet.pth and DNet.pt found in ``folder`` (a warning names the missing ones)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ConfigError(f"videoretalking.release_dir {folder} is not a folder")
        loaded = []
        for release in RELEASES:
            path = folder / release.filename
            if path.is_file():
                self.load_checkpoint(path)
                loaded.append(path)
            else:
                logger.warning("videoretalking: %s not found in %s; that network keeps its current weights "
                               "(source: %s)", release.filename, folder, release.source)
        return loaded

    def convert_official_checkpoint(self, checkpoint: Any, source: str) -> dict[str, dict[str, torch.Tensor]] | None:
        """``{"lnet" | "enet" | "dnet": state_dict}`` for LNet.pth, ENet.pth or DNet.pt, recognised by content."""
        if release_kind(checkpoint) is None:
            return None
        return convert_release(checkpoint, source)

    def release_example(self, release: KnownWeights) -> dict:
        """``release`` as the authors' files hold it: LNet.pth and ENet.pth ``{'state_dict': ...}`` (E-Net's with
        its inner L-Net as ``low_res.*``, which loading ignores), DNet.pt ``{'net_G_ema': ...}``."""
        if release is DNET:
            return {"net_G_ema": self.dnet.state_dict()}
        if release is LNET:
            return {"state_dict": self.lnet.state_dict()}
        if release is ENET:
            low_res = {f"low_res.{k}": v for k, v in self.lnet.state_dict().items()}
            return {"state_dict": {**self.enet.state_dict(), **low_res}}
        raise KeyError(f"{release.filename} is not one of {', '.join(RELEASE_FILES.values())}")

    # ---- stages --------------------------------------------------------------------------------
    def recipe(self) -> list[str]:
        stages = [str(name) for name in self.options["recipe"]]
        unknown = [name for name in stages if name not in STAGES]
        if unknown:
            raise ConfigError(f"videoretalking.recipe: unknown stage(s) {unknown}; the stages are {list(STAGES)}")
        return stages

    def enter_stage(self, stage: str, previous: Path | None) -> Mapping[str, Any]:
        """Switch to ``stage`` (``syncnet``, ``lnet`` or ``enet``), load ``previous`` (ours or a release) and return
        the stage's ``train`` overrides from ``videoretalking.stages``."""
        if stage not in STAGES:
            raise ConfigError(f"videoretalking has no stage {stage!r}; its stages are {list(STAGES)}")
        if previous is not None:
            self.load_checkpoint(previous)
        self.stage = stage
        self.lnet.requires_grad_(stage != "enet")  # E-Net trains on a frozen L-Net
        settings = dict(self.options["stages"].get(stage) or {})
        train = {key: int(settings[key]) for key in ("epochs", "batch_size") if settings.get(key) is not None}
        logger.info("videoretalking stage %s", stage)
        return {"train": train} if train else {}

    def train(self, mode: bool = True) -> "VideoReTalking":
        super().train(mode)
        if self.stage != "syncnet":
            self.syncnet.eval()  # the frozen expert (BatchNorm statistics kept)
        if self.stage == "enet":
            self.lnet.eval()  # E-Net's L-Net is frozen, as the release's ENet sets requires_grad False
        if self.stage != "dnet":
            self.dnet.eval()  # D-Net only makes references outside its own stage
        return self

    # ---- data ----------------------------------------------------------------------------------
    def build_dataset(self, store: Any, split: str) -> Dataset | None:
        """The stage's windows (``syncnet``, ``lnet``, ``enet``) or D-Net's pairs; a split without usable clips is
        an error for training and no validation otherwise."""
        opts = self.options
        train = split == "train"
        seed = opts["train_seed"] if train else 0
        seed = None if seed is None else int(seed)
        try:
            if self.stage == "dnet":
                return self._dnet_pairs(store, split, seed, int(opts["dnet_pairs_per_clip"]) if train else 4)
            size = self.lnet_size * ENET_SCALE if self.stage == "enet" else self.lnet_size
            cls = SyncWindows if self.stage == "syncnet" else LNetWindows
            return cls(store, split, size, pads=list(opts["pads"]), seed=seed, cache_dir=opts["cache_dir"],
                       repeats=int(opts["window_repeats"]) if train else 1)
        except DataError as exc:
            if train:
                raise
            logger.warning("videoretalking %s stage: no validation on split %r (%s)", self.stage, split, exc)
            return None

    def _dnet_pairs(self, store: Any, split: str, seed: int | None, pairs_per_clip: int) -> Dataset:
        """PIRender-style pairs in the release's geometry: needs ReconNet's weights and the BFM's 3D landmarks."""
        from ...face3d import VIDEORETALKING_FACE3D
        from ...face3d.bfm_files import LANDMARKS_3D
        from .dnet_data import DNetPairs
        from .stabilise import build_stabiliser

        opts = self.options
        stabiliser = build_stabiliser(self, None, self.device,
                                      needed_by="videoretalking's dnet stage (the release's 3DMM semantics of every clip)",
                                      instead="leave dnet out of videoretalking.recipe")
        weights = [Path(opts["checkpoint_dir"]) / VIDEORETALKING_FACE3D.filename, Path(opts["bfm_folder"]) / LANDMARKS_3D]
        cache = Path(opts["cache_dir"] or Path(store.root) / "cache" / "videoretalking_dnet")
        return DNetPairs(store, split, stabiliser, weights, cache, seed=seed, pairs_per_clip=pairs_per_clip)

    # ---- optimisation --------------------------------------------------------------------------
    @property
    def perceptual(self) -> PerceptualLoss:
        if self._perceptual is None:
            self._perceptual = PerceptualLoss(self.options, self.section)
        return self._perceptual

    def configure_optimizers(self) -> dict[str, Any]:
        opts = self.options
        betas = (0.5, 0.999)  # hq_wav2lip_train.py
        if self.stage == "syncnet":
            return {"optimizers": {"syncnet": torch.optim.Adam(self.syncnet.parameters(), lr=float(opts["syncnet_lr"]))}}
        if self.stage == "dnet":  # PIRender's generator optimizer
            return {"optimizers": {"dnet": torch.optim.Adam(self.dnet.parameters(), lr=float(opts["dnet_lr"]),
                                                            betas=betas)}}
        generator = self.lnet if self.stage == "lnet" else self.enet
        discriminator = self.quality if self.stage == "lnet" else self.enet_quality
        return {"optimizers": {
            "generator": torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=float(opts["lr"]),
                                          betas=betas),
            "discriminator": torch.optim.Adam(discriminator.parameters(), lr=float(opts["disc_lr"]), betas=betas)}}

    def training_step(self, batch: dict, step: int) -> dict[str, float]:
        if self.stage == "syncnet":
            return self._syncnet_step(batch)
        if self.stage == "dnet":
            return self._dnet_step(batch)
        return self._generator_step(batch)

    def _dnet_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """PIRender's objective on D-Net: perceptual(warp, target) · dnet_warp_weight + perceptual(fake, target) ·
        dnet_final_weight + Gram style(fake, target) · dnet_style_weight (VGG19 on [0, 1] images)."""
        opts = self.options
        with self.autocast():
            out = self.dnet(batch["source"], batch["driving"])
            target = (batch["target"] + 1) / 2
            warp, fake = (out["warp_image"].float() + 1) / 2, (out["fake_image"].float() + 1) / 2
            losses = {"warp": float(opts["dnet_warp_weight"]) * self.perceptual(warp, target),
                      "final": float(opts["dnet_final_weight"]) * self.perceptual(fake, target),
                      "style": float(opts["dnet_style_weight"]) * self.perceptual.style(fake, target)}
        losses["loss"] = losses["warp"] + losses["final"] + losses["style"]
        return losses

    def _dnet_step(self, batch: dict) -> dict[str, float]:
        losses = self._dnet_losses(batch)
        self.backward(losses["loss"])
        self.optimizer_step(self.optimizers["dnet"])
        return {name: value.item() for name, value in losses.items()}

    def _syncnet_loss(self, batch: dict) -> torch.Tensor:
        with self.autocast():
            probability = self.syncnet.sync_probability(batch["mel"], sync_faces(batch["faces"]))
        return sync_bce(probability.float(), batch["label"])

    def _syncnet_step(self, batch: dict) -> dict[str, float]:
        """Wav2Lip's ``color_syncnet_train.py``: BCE of the cosine of the embeddings to the pair's label."""
        loss = self._syncnet_loss(batch)
        self.backward(loss)
        self.optimizer_step(self.optimizers["syncnet"])
        return {"loss": loss.item()}

    def synthesise(self, batch: dict) -> torch.Tensor:
        """The stage's generator on a batch of windows: ``(B, 3, 5, S, S)`` BGR faces."""
        if self.stage == "enet":
            return self.enet(batch["mels"], batch["inputs"], batch["inputs"][:, 3:])[0]
        return self.lnet(batch["mels"], batch["inputs"])

    def _update_sync_weight(self, sync: float) -> None:
        """hq_wav2lip_train.py switches the sync weight on once the generated faces' sync loss (there: on the
        validation set) falls below ``sync_switch_loss``; here its running mean over training steps decides."""
        self._sync_average = sync if self._sync_average is None else 0.9 * self._sync_average + 0.1 * sync
        if self.sync_weight != float(self.options["syncnet_wt"]) and self._sync_average < float(
                self.options["sync_switch_loss"]):
            self.sync_weight = float(self.options["syncnet_wt"])
            logger.info("videoretalking: sync loss %.3f < %s, sync weight now %s", self._sync_average,
                        self.options["sync_switch_loss"], self.sync_weight)

    def _generator_step(self, batch: dict) -> dict[str, float]:
        """hq_wav2lip_train.py's objective (+ the paper's perceptual term): ``sync_wt · sync + disc_wt · GAN +
        (1 - sync_wt - disc_wt) · L1 + lamb_perception · VGG`` for the generator, BCE real/fake for the
        discriminator. The E-Net stage runs the same on its 384 output with its own discriminator, L-Net frozen."""
        opts = self.options
        target = batch["target"]
        discriminator = self.quality if self.stage == "lnet" else self.enet_quality
        with self.autocast():
            fake = self.synthesise(batch)
        with self.frozen(discriminator, self.syncnet):
            with self.autocast():
                frames_fake = torch.cat(fake.unbind(2), dim=0)
                frames_real = torch.cat(target.unbind(2), dim=0)
                l1 = F.l1_loss(fake, target)
                lower = fake if self.stage == "lnet" else F.interpolate(
                    frames_fake, size=(self.lnet_size, self.lnet_size), mode="bilinear",
                    align_corners=False).reshape(WINDOW, -1, 3, self.lnet_size, self.lnet_size).permute(1, 2, 0, 3, 4)
                sync = sync_bce(self.syncnet.sync_probability(batch["sync_mel"], sync_faces(lower)).float(), True)
                gan = F.binary_cross_entropy(discriminator(fake).float().clamp(1e-7, 1 - 1e-7),
                                             torch.ones(len(frames_fake), 1, device=fake.device))
                perception = self.perceptual(frames_fake, frames_real)
                identity = self._identity_loss(frames_fake, frames_real)
                sync_wt, disc_wt = self.sync_weight, float(opts["disc_wt"])
                loss = sync_wt * sync + disc_wt * gan + (1.0 - sync_wt - disc_wt) * l1 + perception + identity
            self.backward(loss)
        self.optimizer_step(self.optimizers["generator"])
        with self.autocast():
            real_p = discriminator(target).float().clamp(1e-7, 1 - 1e-7)
            fake_p = discriminator(fake.detach()).float().clamp(1e-7, 1 - 1e-7)
            d_loss = F.binary_cross_entropy(real_p, torch.ones_like(real_p)) + F.binary_cross_entropy(
                fake_p, torch.zeros_like(fake_p))
        self.backward(d_loss)
        self.optimizer_step(self.optimizers["discriminator"])
        self._update_sync_weight(sync.item())
        scalars = {"loss": loss.item(), "l1": l1.item(), "sync": sync.item(), "gan": gan.item(),
                   "perception": perception.item(), "d": d_loss.item(), "sync_wt": sync_wt}
        return {**scalars, "identity": identity.item()} if self.stage == "enet" else scalars

    def _identity_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """E-Net stage: ``lamb_identity`` × ArcFace's ``1 - cos`` between the generated and real faces (the paper's
        identity term; iresnet100 from ``arcface_weights``). Without the weights: 0 and one warning, or an error
        with ``identity_fallback: error``. 0 in the other stages."""
        weight = float(self.options["lamb_identity"])
        if self.stage != "enet" or weight == 0:
            return fake.new_zeros(())
        arcface = self.loaded_once(("arcface", str(fake.device)), lambda: self._load_arcface(fake.device))
        if arcface is None:
            return fake.new_zeros(())
        from ...face.arcface import identity_loss

        return weight * identity_loss(arcface, fake.float(), real.float(), color="bgr")

    def _load_arcface(self, device: torch.device) -> torch.nn.Module | None:
        """ArcFace from ``arcface_weights``, or None (one warning) when absent and ``identity_fallback: skip``."""
        from ...errors import CheckpointError
        from ...face.arcface import ARCFACE_R100, load_arcface

        path = Path(self.options["arcface_weights"] or ARCFACE_R100.default_path())
        reason = ARCFACE_R100.missing_reason(path)
        if reason is None:
            return load_arcface(path, str(self.options["arcface_network"]), device)
        if str(self.options["identity_fallback"]) == "error":
            raise CheckpointError(f"E-Net's identity loss needs ArcFace's weights: {reason} "
                                  f"(or set videoretalking.identity_fallback: skip)")
        logger.warning("videoretalking enet stage: ArcFace weights missing (%s); training without the identity "
                       "loss. Source: %s", reason, ARCFACE_R100.source)
        return None

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, float]:
        """The expert's BCE (syncnet stage); the generated faces' L1 and sync loss (lnet, enet)."""
        if self.stage == "syncnet":
            return {"loss": self._syncnet_loss(batch).item()}
        if self.stage == "dnet":
            return {name: value.item() for name, value in self._dnet_losses(batch).items()}
        with self.autocast():
            fake = self.synthesise(batch).float()
        return {"loss": F.l1_loss(fake, batch["target"]).item()}

    # ---- inference -----------------------------------------------------------------------------
    generate_options = (*LOOP_OPTIONS, *VIDEORETALKING_OPTIONS)

    @classmethod
    def benchmark_config(cls, work: Path) -> dict:
        """The release's dub, every stage run: stabilised references and the whole enhancement chain
        (``enhance: auto``) with random timing networks in the release's layouts (``timing_networks``: ReconNet, the
        expression template, GPEN, GFPGAN, ParseNet, RetinaFace reporting the tracked face; the pictures mean
        nothing) and the synthetic stand-in's align_img template, written into ``work`` once."""
        from .timing import STANDIN_FOLDER, standin_bfm

        return {"videoretalking": {"reference": "stabilised", "enhance": "auto", "timing_networks": True,
                                   "bfm_folder": str(standin_bfm(Path(work) / STANDIN_FOLDER))}}

    def dubbing_hooks(self, **options: Any) -> VideoReTalkingDubbing:
        known = {option.name for option in VIDEORETALKING_OPTIONS}
        return VideoReTalkingDubbing(self, **{k: v for k, v in options.items() if k in known})

    def generate(self, source_video: str | Path, audio: str | Path, output: str | Path, **options: Any) -> Path:
        """Dub ``source_video`` with ``audio`` through the shared loop (docs/videoretalking.md, "Dubbing");
        options: ``generate_options``, ``seed`` and ``progress``."""
        return dub(self.dubbing_hooks(**options), source_video, audio, output, VIDEORETALKING_OPTIONS, **options)
