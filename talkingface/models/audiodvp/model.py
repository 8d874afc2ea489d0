"""The registered ``audiodvp`` model: ATVGnet's AT-net audio encoder, the person-specific Audio2Expression, the neural
face renderer (pix2pix U-Net with refine modules) and its PatchGAN, trained on one person's clips and dubbing through
the shared loop (docs/audiodvp.md)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ...dubbing import LOOP_OPTIONS, dub
from ...errors import CheckpointError, ConfigError, DataError
from ...registry import AUDIO_FEATURES, register_model
from ...weights import KnownWeights
from ..base import TalkingFaceModel
from .networks import ATNetEncoder, AudioExpression, NLayerDiscriminator, UnetGenerator
from .networks.convert import convert_release, release_example, release_kind
from .releases import ATNET, RELEASES

logger = logging.getLogger(__name__)

STAGES = ("expression", "renderer")
ENCODERS = ("atnet", "feature")
ATNET_FEATURE = "audiodvp_mfcc"
ATNET_SHAPE = (28, 12)
ATNET_WIDTH = 256


@register_model("audiodvp")
class AudioDVP(TalkingFaceModel):
    """AudioDVP (Wen et al., TVCG 2020; xinwen-cs/AudioDVP). See docs/audiodvp.md.

    ``audio_encoder(mfcc (B, 1, 28, 12)) -> (B, 256)`` (AT-net's encoder), ``audio2expression(features (B, 7, F))
    -> (B, 64, 1)``, ``renderer(renders (B, 21, S, S) in [-1, 1]) -> (B, 3, S, S)`` and ``discriminator(cat(renders,
    image) (B, 24, S, S)) -> logits``; ``load_checkpoint`` takes atnet_lstm_18.pth, delta_net.pth and the renderer's
    ``{epoch}_net_G.pth`` / ``{epoch}_net_D.pth`` by content. Training: ``expression`` (Audio2Expression on the
    fitted expressions of the person's clips) and ``renderer`` (the neural renderer on masked renders and crops).
    """

    section = "audiodvp"
    default_dataset = "demo"
    releases = RELEASES
    smoke_config = {
        "demo": {"clips": 3},
        "preprocess": {"features": ["mfcc"], "steps": ["face3d"]},
        "face3d": {"convention": "audiodvp", "method": "fit", "standin": True, "bfm_folder": "dataset/face3d_standin",
                   "fit": {"key_frames": 2, "key_landmark_steps": 20, "key_steps": 2, "frame_landmark_steps": 10,
                           "frame_steps": 1}},
        "audiodvp": {"audio_encoder": "feature", "audio_feature": "mfcc", "image_size": 32,
                     "renderer": {"num_downs": 5, "ngf": 4}, "discriminator": {"ndf": 4, "n_layers": 1},
                     "recipe": ["expression", "renderer"], "stages": {"renderer": {"batch_size": 2}}}}

    def __init__(self, config=None):
        super().__init__(config)
        self.options = opts = self.config[self.section]
        self.window = int(opts["window"])
        if self.window < 3 or self.window % 2 == 0:
            raise ConfigError(f"audiodvp.window must be odd and >= 3 (AudioDVP: 7), got {self.window}")
        self.encoder_kind = str(opts["audio_encoder"])
        if self.encoder_kind not in ENCODERS:
            raise ConfigError(f"audiodvp.audio_encoder must be one of {ENCODERS}, got {self.encoder_kind!r}")
        self.audio_feature = ATNET_FEATURE if self.encoder_kind == "atnet" else str(opts["audio_feature"])
        if self.encoder_kind == "atnet" and str(opts["audio_feature"]) != ATNET_FEATURE:
            raise ConfigError(f"audiodvp.audio_encoder=atnet reads {ATNET_FEATURE!r}; set audiodvp.audio_feature to it "
                              f"or audio_encoder=feature")
        self.audio_shape = self._feature_shape()
        self.audio_width = int(torch.Size(self.audio_shape).numel())
        feature_dim = ATNET_WIDTH if self.encoder_kind == "atnet" else self.audio_width
        if feature_dim <= 6:
            raise ConfigError(f"audiodvp: Audio2Expression's convolutions need more than 6 values per frame, "
                              f"{self.audio_feature!r} has {feature_dim}")
        self.image_size = int(opts["image_size"])
        renderer = {k: v for k, v in dict(opts["renderer"]).items()}
        downs = int(renderer["num_downs"])
        if downs < 5 or self.image_size % (2 ** downs):
            raise ConfigError(f"audiodvp.image_size {self.image_size} must be a multiple of 2^num_downs "
                              f"(num_downs {downs} >= 5; AudioDVP: 256 and 8)")
        self.audio_encoder = ATNetEncoder()
        self.audio2expression = AudioExpression(window=self.window, feature_dim=feature_dim,
                                                exp_dim=int(opts["exp_dim"]))
        self.renderer = UnetGenerator(3 * self.window, 3, num_downs=downs, ngf=int(renderer["ngf"]),
                                      use_dropout=bool(renderer["use_dropout"]), use_refine=True)
        disc = dict(opts["discriminator"])
        self.discriminator = NLayerDiscriminator(3 * self.window + 3, int(disc["ndf"]), n_layers=int(disc["n_layers"]))
        self.stage = "expression"
        self.atnet_trainable = False
        if self.encoder_kind == "atnet":
            self._set_up_atnet()
        else:
            logger.info("audiodvp: audio feature %r (%d values per frame) replaces AT-net", self.audio_feature,
                        self.audio_width)

    def _feature_shape(self) -> tuple[int, ...]:
        if self.encoder_kind == "atnet":
            return ATNET_SHAPE
        return tuple(int(d) for d in AUDIO_FEATURES.get(self.audio_feature)(self.config).frame_shape())

    def _set_up_atnet(self) -> None:
        """Load atnet_lstm_18.pth (frozen, as AudioDVP uses it) or, without it, train the encoder with the
        person-specific model (``atnet_fallback: train``) or fail (``error``); the log says which."""
        opts = self.options
        path = Path(opts["atnet_weights"] or ATNET.default_path())
        reason = ATNET.missing_reason(path)
        if reason is None:
            self.load_checkpoint(path)
            self.audio_encoder.requires_grad_(False)
            logger.info("audiodvp: AT-net encoder from %s (frozen)", path)
            return
        if str(opts["atnet_fallback"]) == "error":
            raise CheckpointError(f"audiodvp.audio_encoder=atnet needs ATVGnet's weights: {reason}. Source: "
                                  f"{ATNET.source} (or set audiodvp.atnet_fallback: train, or audio_encoder: feature)")
        self.atnet_trainable = True
        logger.warning("audiodvp: %s; the AT-net encoder is TRAINED with the person-specific model (expression "
                       "stage) instead of ATVGnet's LRW weights. Source of the weights: %s", reason, ATNET.source)

    # ---- releases ------------------------------------------------------------------------------
    def convert_official_checkpoint(self, checkpoint: Any, source: str) -> dict[str, dict[str, torch.Tensor]] | None:
        """``{"audio_encoder" | "audio2expression" | "renderer" | "discriminator": state_dict}`` by content."""
        if release_kind(checkpoint) is None:
            return None
        return convert_release(checkpoint, source)

    def release_example(self, release: KnownWeights) -> dict:
        """``release`` as AudioDVP's scripts save it (bare state dicts; AT-net's with ``module.`` and its unused
        keys)."""
        module = self.get_submodule(release.fills[0])
        return release_example(release.fills[0], module)

    # ---- audio ----------------------------------------------------------------------------------
    def encode_audio(self, rows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, W, F) per-frame features of (B, W, *shape or C) audio rows; rows that are not ``valid`` give zero
        features (AudioDVP pads its feature windows with zeros)."""
        batch, width = rows.shape[:2]
        if self.encoder_kind == "atnet":
            features = self.audio_encoder(rows.reshape(batch * width, 1, *ATNET_SHAPE)).reshape(batch, width, -1)
        else:
            features = rows.reshape(batch, width, -1)
        return features * valid.to(features.dtype).unsqueeze(-1)

    def face_renderer(self):
        """The face model (``face3d.bfm_folder``, AudioDVP convention) rendering at ``image_size``."""
        from ...face3d import ParametricFaceModel
        from .rendering import FaceRenderer

        folder = str(self.config["face3d"]["bfm_folder"])
        opts = self.options

        def load() -> FaceRenderer:
            model = ParametricFaceModel(folder, convention="audiodvp")
            return FaceRenderer(model, self.image_size, int(opts["mask_dilate"]), int(opts["mask_erode"]))

        return self.loaded_once(("face_renderer", folder), load)

    # ---- stages --------------------------------------------------------------------------------
    def recipe(self) -> list[str]:
        stages = [str(name) for name in self.options["recipe"]]
        unknown = [name for name in stages if name not in STAGES]
        if unknown:
            raise ConfigError(f"audiodvp.recipe: unknown stage(s) {unknown}; the stages are {list(STAGES)}")
        return stages

    def enter_stage(self, stage: str, previous: Path | None) -> Mapping[str, Any]:
        if stage not in STAGES:
            raise ConfigError(f"audiodvp has no stage {stage!r}; its stages are {list(STAGES)}")
        if previous is not None:
            self.load_checkpoint(previous)
        self.stage = stage
        settings = dict(self.options["stages"].get(stage) or {})
        train = {key: int(settings[key]) for key in ("epochs", "batch_size", "max_steps") if settings.get(key) is not None}
        logger.info("audiodvp stage %s", stage)
        return {"train": train} if train else {}

    def train(self, mode: bool = True) -> "AudioDVP":
        super().train(mode)
        if not (self.atnet_trainable and self.stage == "expression"):
            self.audio_encoder.eval()  # a loaded (frozen) AT-net keeps its BatchNorm statistics
        return self

    # ---- data ----------------------------------------------------------------------------------
    def build_dataset(self, store: Any, split: str) -> Dataset | None:
        """The stage's items: Audio2Expression windows or the renderer's masked render windows."""
        from .data import ExpressionWindows, RendererWindows, build_nfr_clips

        opts = self.options
        train = split == "train"
        try:
            if self.stage == "expression":
                faces = self.face_renderer()
                return ExpressionWindows(store, split, self.audio_feature, faces.exp, self.window)
            clips = build_nfr_clips(store, split, self.face_renderer().model, self.face_renderer(),
                                    opts["cache_dir"], self.device)
            seed = opts["train_seed"] if train else 0
            return RendererWindows(clips, self.window, flip=bool(opts["flip"]) and train,
                                   seed=None if seed is None else int(seed))
        except DataError as exc:
            if train:
                raise
            logger.warning("audiodvp %s stage: no validation on split %r (%s)", self.stage, split, exc)
            return None

    # ---- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        opts = self.options
        betas = tuple(float(b) for b in opts["betas"])
        if self.stage == "expression":
            groups = [{"params": self.audio2expression.parameters(), "lr": float(opts["expression_lr"])}]
            if self.atnet_trainable:
                groups.append({"params": self.audio_encoder.parameters(), "lr": float(opts["atnet_lr"])})
            return {"optimizers": {"expression": torch.optim.Adam(groups, betas=betas)}}
        lr = float(opts["renderer_lr"])
        return {"optimizers": {"generator": torch.optim.Adam(self.renderer.parameters(), lr=lr, betas=betas),
                               "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)}}

    def predict_expression(self, batch: dict) -> torch.Tensor:
        """(B, exp) Audio2Expression on a batch of windows."""
        features = self.encode_audio(batch["audio"], batch["valid"])
        return self.audio2expression(features).squeeze(-1)

    def _expression_loss(self, batch: dict) -> torch.Tensor:
        """AudioExpressionModel: ``lambda_delta · MSE(predicted, fitted)``."""
        with self.autocast():
            predicted = self.predict_expression(batch)
        return float(self.options["lambda_delta"]) * F.mse_loss(predicted.float(), batch["delta"])

    def training_step(self, batch: dict, step: int) -> dict[str, float]:
        if self.stage == "expression":
            loss = self._expression_loss(batch)
            self.backward(loss)
            self.optimizer_step(self.optimizers["expression"])
            return {"loss": loss.item()}
        return self._renderer_step(batch)

    def _renderer_step(self, batch: dict) -> dict[str, float]:
        """pix2pix's ``optimize_parameters``: D on real and fake pairs (0.5 · (real + fake), BCE with logits), then G
        with the vanilla GAN loss + ``lambda_l1`` · L1 (AudioDVP: 100), D frozen."""
        renders, target = batch["renders"], batch["target"]
        with self.autocast():
            fake = self.renderer(renders)
            real_logits = self.discriminator(torch.cat([renders, target], 1)).float()
            fake_logits = self.discriminator(torch.cat([renders, fake.detach()], 1)).float()
            d_loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        self.backward(d_loss)
        self.optimizer_step(self.optimizers["discriminator"])
        with self.frozen(self.discriminator):
            with self.autocast():
                logits = self.discriminator(torch.cat([renders, fake], 1)).float()
                gan = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
                l1 = F.l1_loss(fake.float(), target)
                loss = gan + float(self.options["lambda_l1"]) * l1
            self.backward(loss)
        self.optimizer_step(self.optimizers["generator"])
        return {"loss": loss.item(), "gan": gan.item(), "l1": l1.item(), "d": d_loss.item()}

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, float]:
        if self.stage == "expression":
            return {"loss": self._expression_loss(batch).item()}
        with self.autocast():
            fake = self.renderer(batch["renders"]).float()
        return {"loss": F.l1_loss(fake, batch["target"]).item()}

    # ---- inference -----------------------------------------------------------------------------
    generate_options = LOOP_OPTIONS

    @classmethod
    def benchmark_config(cls, work: Path) -> dict:
        """The synthetic stand-in face model at the Basel Face Model's size (35,709 vertices), written into
        ``work`` once (the target's fit runs in every dub, as in ``infer``)."""
        from ...face3d import bfm_sized_standin_config

        return bfm_sized_standin_config(work)

    def dubbing_hooks(self, **options: Any):
        from .dubbing import AudioDVPDubbing

        return AudioDVPDubbing(self)

    def strip_rows(self, source_video: str | Path, audio: str | Path, generated: str | Path) -> list[tuple[str, Path]]:
        """The 3DMM renders the neural renderer saw for ``generated`` (``<generated>.render.mp4``, made here by the
        same dub without the renderer), for the evaluation strips."""
        out = Path(generated).with_suffix(".render.mp4")
        if not out.exists():
            from .dubbing import AudioDVPDubbing

            dub(AudioDVPDubbing(self, preview=True), source_video, audio, out, (), progress=False)
        return [("3DMM render", out)]

    def generate(self, source_video: str | Path, audio: str | Path, output: str | Path, **options: Any) -> Path:
        """Dub ``source_video`` (the person the model was trained on) with ``audio`` through the shared loop
        (docs/audiodvp.md, "Dubbing"); options: the loop's, ``seed`` and ``progress``."""
        return dub(self.dubbing_hooks(), source_video, audio, output, (), **options)
