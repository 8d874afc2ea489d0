"""The registered ``gsmoothface`` model: A2EP (audio → 64 Deep3DFaceRecon expression coefficients, a FaceFormer
decoder on wav2vec 2.0 with a one-hot speaker style) and TAFT (the target frame with its 3DMM render pasted in by MAFB,
translated into the output frame), trained in two stages and dubbing through the shared loop (docs/gsmoothface.md)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ...dubbing import LOOP_OPTIONS, GenerateOption, dub
from ...errors import CheckpointError, ConfigError, DataError
from ...registry import AUDIO_FEATURES, register_model
from ...weights import KnownWeights
from ..base import TalkingFaceModel
from .networks import TaftGenerator
from .networks.a2ep import A2EP
from .networks.convert import release_example, release_kind
from .releases import RELEASES, WAV2VEC2_BASE_960H
from .taft_training import (EMA_DECAY, TaftLoss, TaftLossConfig, TaftPatchDiscriminator, accumulate_ema,
                            discriminator_loss, init_taft_weights_)

logger = logging.getLogger(__name__)

STAGES = ("a2ep", "taft")
ENCODERS = ("wav2vec2", "feature")
SPEAKER_BYTES = 16384  # the speaker table travels in the state dict as zero-padded JSON (weights-only files)
SAMPLES_PER_FRAME = 640  # 16 kHz at 25 fps


def speaker_option(text: str) -> str | int:
    """``--speaker``: an index or a speaker / clip name."""
    return int(text) if text.isdigit() else text


GSMOOTHFACE_OPTIONS = (GenerateOption(
    "speaker", "A2EP's speaker style: a training speaker or clip name, or an index (default: the target's own speaker "
               "when it is a training clip, else 0)", speaker_option),)


@register_model("gsmoothface")
class GSmoothFace(TalkingFaceModel):
    """GSmoothFace (Zhang et al., TVCG 2025; zhanghm1995/GSmoothFace and GSmoothFace_TAFT). See docs/gsmoothface.md.

    ``a2ep`` (``Face3DMMOneHotFormer``: ``a2ep(batch, ...)`` the official training forward, ``a2ep.predict(batch)``),
    ``taft`` (``Face2FaceGenerator``'s ``net_G_ema``: ``taft(reference, blended) -> frame``, all (B, 3, S, S) in
    [-1, 1]) and ``taft_train`` (``net_G``, the generator TAFT's stage optimises; ``taft`` is its moving average).
    ``load_checkpoint`` takes the A2EP Lightning ``.ckpt``, the TAFT ``.pt`` and wav2vec2-base-960h's weights by
    content. Training: ``a2ep`` (vertex loss on the clips' fitted coefficients) and ``taft`` (paired MAFB blends).
    """

    section = "gsmoothface"
    default_dataset = "demo"
    releases = RELEASES
    smoke_config = {
        "demo": {"clips": 3},
        "preprocess": {"features": ["mfcc"], "steps": ["face3d"]},
        "face3d": {"convention": "deep3dfacerecon", "method": "fit", "standin": True,
                   "bfm_folder": "dataset/face3d_standin",
                   "fit": {"key_frames": 2, "key_landmark_steps": 20, "key_steps": 2, "frame_landmark_steps": 10,
                           "frame_steps": 1}},
        "gsmoothface": {"a2ep": {"audio_encoder": "feature", "audio_feature": "mfcc", "feature_dim": 16,
                                 "fetch_length": 8, "fetch_stride": 8},
                        "taft": {"image_size": 32, "base_nc": 4, "max_nc": 8, "descriptor_nc": 8, "layers": 2,
                                 "num_res_blocks": 1},
                        "stages": {"a2ep": {"batch_size": 1}, "taft": {"batch_size": 2}}}}

    def __init__(self, config=None):
        super().__init__(config)
        self.options = opts = self.config[self.section]
        a, t = opts["a2ep"], opts["taft"]
        self.encoder_kind = str(a["audio_encoder"])
        if self.encoder_kind not in ENCODERS:
            raise ConfigError(f"gsmoothface.a2ep.audio_encoder must be one of {ENCODERS}, got {self.encoder_kind!r}")
        self.audio_feature: str | None = None
        width = None
        if self.encoder_kind == "feature":
            if not a["audio_feature"]:
                raise ConfigError("gsmoothface.a2ep.audio_encoder=feature needs gsmoothface.a2ep.audio_feature (a "
                                  "registered audio feature, e.g. mfcc)")
            self.audio_feature = str(a["audio_feature"])
            width = self.feature_width(self.audio_feature)
        self.a2ep = A2EP(wav2vec2=dict(a["wav2vec2"]), feature_dim=int(a["feature_dim"]), vertice_dim=64,
                         num_speakers=int(a["num_speakers"]), period=int(a["period"]),
                         max_seq_len=int(a["max_seq_len"]), attention=str(a["wav2vec2_attention"]), audio_width=width)
        self.image_size = int(t["image_size"])
        if self.image_size % (2 ** int(t["layers"])):
            raise ConfigError(f"gsmoothface.taft.image_size {self.image_size} must be a multiple of 2^layers "
                              f"({2 ** int(t['layers'])})")
        self.taft_train = self._taft_generator(t)
        init_taft_weights_(self.taft_train, float(t["init_gain"]))
        self.taft = self._taft_generator(t)
        self.taft.load_state_dict(self.taft_train.state_dict())  # the EMA starts as a copy (accumulate(ema, G, 0))
        self.taft.requires_grad_(False)
        self.taft_discriminator = TaftPatchDiscriminator() if float(t["weight_gan"]) > 0 else None
        self.register_buffer("taft_iterations", torch.zeros((), dtype=torch.long))
        self.register_buffer("speaker_json", torch.zeros(SPEAKER_BYTES, dtype=torch.uint8))
        self.stage = "a2ep"
        self._taft_loss: TaftLoss | None = None
        if self.encoder_kind == "wav2vec2":
            self._set_up_wav2vec2()
        else:
            logger.info("gsmoothface: A2EP reads the registered feature %r (%d values per frame) instead of wav2vec "
                        "2.0", self.audio_feature, width)

    @staticmethod
    def _taft_generator(t: Mapping[str, Any]) -> TaftGenerator:
        return TaftGenerator(image_nc=3, coeff_nc=73, descriptor_nc=int(t["descriptor_nc"]), base_nc=int(t["base_nc"]),
                             max_nc=int(t["max_nc"]), layers=int(t["layers"]), num_res_blocks=int(t["num_res_blocks"]))

    def feature_width(self, name: str) -> int:
        """Values per frame of the registered audio feature ``name``."""
        return int(np.prod(AUDIO_FEATURES.get(name)(self.config).frame_shape()))

    def _set_up_wav2vec2(self) -> None:
        """Load wav2vec2-base-960h (A2EP's initialisation) when present; without it a random encoder where
        ``wav2vec2_fallback: random`` allows it (a warning), else CheckpointError."""
        a = self.options["a2ep"]
        path = Path(a["wav2vec2_weights"] or WAV2VEC2_BASE_960H.default_path())
        reason = WAV2VEC2_BASE_960H.missing_reason(path)
        if reason is None:
            self.load_checkpoint(path)
            logger.info("gsmoothface: wav2vec 2.0 encoder from %s", path)
            return
        if str(a["wav2vec2_fallback"]) == "error":
            raise CheckpointError(f"gsmoothface.a2ep.audio_encoder=wav2vec2 needs facebook/wav2vec2-base-960h's weights: "
                                  f"{reason}. Source: {WAV2VEC2_BASE_960H.source} (or set "
                                  f"gsmoothface.a2ep.wav2vec2_fallback: random)")
        logger.warning("gsmoothface: %s; A2EP's wav2vec 2.0 encoder starts from a RANDOM initialisation (its CNN stays "
                       "frozen, as GSmoothFace freezes it). Source of the weights: %s", reason,
                       WAV2VEC2_BASE_960H.source)

    # ---- releases ------------------------------------------------------------------------------------------------
    def convert_official_checkpoint(self, checkpoint: Any, source: str) -> dict[str, dict[str, torch.Tensor]] | None:
        """``{"a2ep" | "a2ep.audio_encoder" | "taft" (+ "taft_train"): state_dict}`` by content."""
        from .networks.convert import convert_release

        kind = release_kind(checkpoint)
        if kind is None:
            return None
        expected = {"a2ep": self.a2ep.state_dict(), "taft_train": None}
        if self.a2ep.audio_encoder is not None:
            expected["a2ep.audio_encoder"] = self.a2ep.audio_encoder.state_dict()
        if kind == "taft":
            logger.warning("gsmoothface: %s holds TAFT weights, licensed CC BY-NC 4.0 (GSmoothFace_TAFT): "
                           "non-commercial use only", source)
        return convert_release(checkpoint, source, expected, str(self.options["taft"]["weights"]))

    def release_example(self, release: KnownWeights) -> dict:
        """``release`` as the authors' code saves it (docs/gsmoothface.md, "Checkpoints")."""
        if release.fills[0] == "taft":
            return release_example("taft", self.taft, train_module=self.taft_train)
        if release.fills[0] == "a2ep":
            return release_example("a2ep", self.a2ep)
        return release_example("wav2vec2", self.a2ep.audio_encoder)

    # ---- speakers ------------------------------------------------------------------------------------------------
    def speaker_table(self):
        """The training split's speaker table saved with the weights (None before A2EP saw data)."""
        from .data import SpeakerTable

        raw = bytes(self.speaker_json.cpu().numpy()).rstrip(b"\0")
        return SpeakerTable.from_dict(json.loads(raw)) if raw else None

    def _store_speakers(self, table) -> None:
        raw = json.dumps(table.as_dict()).encode()
        if len(raw) > SPEAKER_BYTES:
            raise ConfigError(f"gsmoothface: the speaker table ({len(raw)} bytes of names) exceeds {SPEAKER_BYTES}")
        values = torch.zeros(SPEAKER_BYTES, dtype=torch.uint8)
        values[:len(raw)] = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        self.speaker_json.copy_(values)

    def one_hot(self, speaker: str | int | None, target: Path | None = None) -> torch.Tensor:
        """(1, num_speakers): ``speaker`` (a name, one of its clips, an index); None: the target video's own speaker
        when it is a training clip, else speaker 0."""
        from .data import speaker_index

        count = self.a2ep.obj_vector.in_features
        table = self.speaker_table()
        if speaker is None:
            clip = Path(target).parent.name if target is not None else None
            index = table.speakers.index(table.clips[clip]) if table and clip in table.clips else 0
            logger.info("gsmoothface: speaker style %d%s", index, f" ({table.speakers[index]})" if table else "")
        elif table is not None:
            index = speaker_index(table, speaker)
        elif isinstance(speaker, int) and 0 <= speaker < count:
            index = speaker
        else:
            raise ConfigError(f"gsmoothface: speaker {speaker!r}: these weights carry no speaker names; give an index "
                              f"below {count}")
        return torch.eye(count)[index:index + 1]

    # ---- the face model --------------------------------------------------------------------------------------------
    def face_model(self):
        """The Deep3DFaceRecon face model of ``face3d.bfm_folder`` (once per model)."""
        from ...face3d import ParametricFaceModel

        folder = str(self.config["face3d"]["bfm_folder"])
        return self.loaded_once(("face_model", folder),
                                lambda: ParametricFaceModel(folder, convention="deep3dfacerecon"))

    def blender(self):
        """``faces.FaceBlender`` at TAFT's image size (CPU)."""
        from .faces import FaceBlender

        return self.loaded_once(("blender", self.image_size), lambda: FaceBlender(self.face_model(), self.image_size))

    # ---- stages --------------------------------------------------------------------------------------------------
    def recipe(self) -> list[str]:
        stages = [str(name) for name in self.options["recipe"]]
        unknown = [name for name in stages if name not in STAGES]
        if unknown:
            raise ConfigError(f"gsmoothface.recipe: unknown stage(s) {unknown}; the stages are {list(STAGES)}")
        return stages

    def enter_stage(self, stage: str, previous: Path | None) -> Mapping[str, Any]:
        if stage not in STAGES:
            raise ConfigError(f"gsmoothface has no stage {stage!r}; its stages are {list(STAGES)}")
        if previous is not None:
            self.load_checkpoint(previous)
        self.stage = stage
        settings = dict(self.options["stages"].get(stage) or {})
        train = {key: int(settings[key]) for key in ("epochs", "batch_size", "max_steps") if settings.get(key) is not None}
        logger.info("gsmoothface stage %s", stage)
        return {"train": train} if train else {}

    def train(self, mode: bool = True) -> "GSmoothFace":
        super().train(mode)
        self.taft.eval()  # the moving average is never trained directly
        if self.stage == "taft":
            self.a2ep.eval()
        else:
            self.taft_train.eval()
        return self

    # ---- data ----------------------------------------------------------------------------------------------------
    def build_dataset(self, store: Any, split: str) -> Dataset | None:
        """A2EP's windows or TAFT's pairs of ``split``."""
        train = split == "train"
        try:
            if self.stage == "a2ep":
                return self._a2ep_dataset(store, split)
            from .taft_data import TaftPairs, build_taft_clips

            t = self.options["taft"]
            clips = build_taft_clips(store, split, self.blender(), self.options["cache_dir"],
                                     (float(t["crop_level"]), float(t["vertical_adjust"])), torch.device("cpu"))
            seed = self.options["train_seed"] if train else 0
            return TaftPairs(clips, None if seed is None else int(seed))
        except DataError as exc:
            if train:
                raise
            logger.warning("gsmoothface %s stage: no validation on split %r (%s)", self.stage, split, exc)
            return None

    def _a2ep_dataset(self, store: Any, split: str) -> Dataset:
        from .data import A2EPWindows, mouth_weights, speaker_table

        a = self.options["a2ep"]
        if split == "train" or self.speaker_table() is None:
            self._store_speakers(speaker_table(store, "train", int(a["num_speakers"]), str(a["speakers_by"])))
        face_model = self.face_model()
        source = a["mouth_mask"]
        if source is None or str(source) == "none":
            self.a2ep.set_mouth_weights(None)
        else:
            self.a2ep.set_mouth_weights(mouth_weights(face_model, source, float(a["mouth_weight"])))
        return A2EPWindows(store, split, face_model, self.speaker_table(), int(a["fetch_length"]),
                           int(a["fetch_stride"]), feature=self.audio_feature)

    # ---- optimisation --------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        if self.stage == "a2ep":
            a = self.options["a2ep"]
            params = [p for p in self.a2ep.parameters() if p.requires_grad]
            optimizer = torch.optim.Adam(params, lr=float(a["lr"]), weight_decay=float(a["weight_decay"]),
                                         betas=(0.9, 0.999), eps=1e-6)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(a["lr_decay_epochs"]),
                                                        gamma=float(a["lr_decay_rate"]))
            return {"optimizers": {"a2ep": optimizer}, "schedulers": {"a2ep": scheduler}}
        t = self.options["taft"]
        betas = tuple(float(b) for b in t["betas"])
        optimizers = {"taft": torch.optim.Adam(self.taft_train.parameters(), lr=self._taft_lr(), betas=betas)}
        if self.taft_discriminator is not None:
            optimizers["taft_discriminator"] = torch.optim.Adam(self.taft_discriminator.parameters(),
                                                                lr=float(t["lr"]), betas=betas)
        return {"optimizers": optimizers}

    def _taft_lr(self) -> float:
        """The release's StepLR per iteration, from the iteration count kept in the state dict (exact on resume)."""
        t = self.options["taft"]
        decays = int(self.taft_iterations) // int(t["lr_decay_iterations"])
        return float(t["lr"]) * float(t["lr_decay_rate"]) ** decays

    @property
    def taft_loss(self) -> TaftLoss:
        if self._taft_loss is None:
            t = self.options["taft"]
            self._taft_loss = TaftLoss(TaftLossConfig(
                weight_perceptual_final=float(t["weight_perceptual"]), weight_l1=float(t["weight_l1"]),
                weight_gan=float(t["weight_gan"]), perceptual_fallback=str(t["perceptual_fallback"]),
                vgg19_weights=t["vgg19_weights"]), section="gsmoothface.taft")
        return self._taft_loss

    def a2ep_loss(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The official ``_run_step``: the vertex loss of the (free-running) forward, or with ``supervise_exp`` the
        coefficients' MSE.

        ``teacher_forcing: true``: the official forward feeds the ground truth back through ``vertice_map``, a
        Linear(64, ·), so it takes the 64 coefficients (template zeros (B, 1, 64), ``face_vertex`` the expressions;
        the official training code hands it the (T, 3N) vertices and fails); the vertices are then made from the
        output as the free-running path makes them. The biased mask is 3-D (one item's heads): batch 1."""
        a = self.options["a2ep"]
        with self.autocast():
            if a["teacher_forcing"]:
                exp = batch["exp"]
                if len(exp) != 1:
                    raise ConfigError("gsmoothface.a2ep.teacher_forcing: the biased mask takes batch 1 (set "
                                      "gsmoothface.stages.a2ep.batch_size: 1)")
                forced = {**batch, "template": exp.new_zeros(len(exp), 1, exp.shape[-1]), "face_vertex": exp}
                predicted = self.a2ep(forced, teacher_forcing=True, return_loss=False, return_exp=True)
            else:
                predicted = self.a2ep(batch, teacher_forcing=False, return_loss=False, return_exp=True)
            if a["supervise_exp"]:
                return F.mse_loss(predicted.float(), batch["exp"])
            vertices = batch["template"] + torch.einsum("ijk,iak->iaj", batch["exp_base"], predicted.float())
            return self.a2ep.loss(vertices, batch["face_vertex"], torch.nn.MSELoss()).float()

    def training_step(self, batch: dict, step: int) -> dict[str, float]:
        if self.stage == "a2ep":
            loss = self.a2ep_loss(batch)
            self.backward(loss)
            self.optimizer_step(self.optimizers["a2ep"])
            return {"loss": loss.item()}
        return self._taft_step(batch)

    def _taft_step(self, batch: dict) -> dict[str, float]:
        """The released trainer's iteration (``Face2FaceTrainer.optimize_parameters``): ``net_G(reference, blended)``
        against the frame, 4 · perceptual + L1 (+ our optional GAN term), the EMA update after every step."""
        reference, blended, target = batch["reference"], batch["blended"], batch["target"]
        disc = self.taft_discriminator
        optimizer = self.optimizers["taft"]
        for group in optimizer.param_groups:
            group["lr"] = self._taft_lr()
        with self.autocast():
            fake = self.taft_train(reference, blended)
        if disc is not None:
            with self.frozen(disc):
                losses = self.taft_loss.generator_losses(fake.float(), target, blended, disc)
                self.backward(losses["total_loss"])
        else:
            losses = self.taft_loss.generator_losses(fake.float(), target)
            self.backward(losses["total_loss"])
        if self.optimizer_step(optimizer):
            accumulate_ema(self.taft, self.taft_train, EMA_DECAY)
            self.taft_iterations += 1
        logs = {"loss": float(losses["total_loss"].detach()), **{k: float(v.detach()) for k, v in losses.items()
                                                                  if k != "total_loss"}}
        if disc is not None:
            d_loss = discriminator_loss(disc(fake.detach().float(), blended), disc(target, blended))
            self.backward(d_loss)
            self.optimizer_step(self.optimizers["taft_discriminator"])
            logs["discriminator"] = float(d_loss.detach())
        return logs

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, float]:
        if self.stage == "a2ep":
            return {"loss": self.a2ep_loss(batch).item()}
        with self.autocast():
            fake = self.taft(batch["reference"], batch["blended"]).float()
        return {"loss": F.l1_loss(fake, batch["target"]).item()}

    # ---- inference -----------------------------------------------------------------------------------------------
    generate_options = (*LOOP_OPTIONS, *GSMOOTHFACE_OPTIONS)

    @torch.no_grad()
    def predict_expressions(self, wav: np.ndarray, rows: np.ndarray | None, frames: int, one_hot: torch.Tensor
                            ) -> np.ndarray:
        """(frames, 64) expression coefficients at 25 fps for the whole driving audio: A2EP's ``predict`` on chunks
        of at most ``max_seq_len`` frames, cross-faded where they overlap (``chunks``). ``wav``: 16 kHz float;
        ``rows``: the feature's (T, C) rows (``audio_encoder: feature``)."""
        from .chunks import predict_chunked
        from .data import normalise_waveform

        a2ep, device = self.a2ep, self.device
        length = min(a2ep.max_frames, int(self.options["a2ep"]["max_seq_len"]))
        overlap = min(int(self.options["chunk_overlap"]), length // 2)  # a middle chunk fades in and out
        style = one_hot.to(device)

        def predict(start: int, end: int) -> np.ndarray:
            if a2ep.audio_encoder is None:
                audio = torch.from_numpy(np.ascontiguousarray(rows[start:end], np.float32)).unsqueeze(0)
            else:
                piece = normalise_waveform(wav[start * SAMPLES_PER_FRAME:end * SAMPLES_PER_FRAME])
                audio = torch.from_numpy(piece).unsqueeze(0)
            with self.autocast():
                out = a2ep.predict({"raw_audio": audio.to(device), "one_hot": style})[0].float().cpu().numpy()
            if len(out) < end - start:  # the official prediction is padded by replicating its last row
                out = np.concatenate([out, np.repeat(out[-1:], end - start - len(out), 0)])
            return out[: end - start]

        return predict_chunked(predict, frames, length, overlap)

    @classmethod
    def benchmark_config(cls, work: Path) -> dict:
        """The synthetic stand-in face model at the Basel Face Model's size (35,709 vertices), written into
        ``work`` once (the target's fit runs in every dub, as in ``infer``)."""
        from ...face3d import bfm_sized_standin_config

        return bfm_sized_standin_config(work)

    def dubbing_hooks(self, **options: Any):
        from .dubbing import GSmoothFaceDubbing

        return GSmoothFaceDubbing(self, speaker=options.get("speaker"))

    def strip_rows(self, source_video: str | Path, audio: str | Path, generated: str | Path) -> list[tuple[str, Path]]:
        """The MAFB blends TAFT saw for ``generated`` (``<generated>.blend.mp4``: the 3DMM render with A2EP's
        expressions pasted into the frames), for the evaluation strips."""
        out = Path(generated).with_suffix(".blend.mp4")
        if not out.exists():
            from .dubbing import GSmoothFaceDubbing

            dub(GSmoothFaceDubbing(self, preview=True), source_video, audio, out, GSMOOTHFACE_OPTIONS,
                progress=False)
        return [("MAFB blend", out)]

    def generate(self, source_video: str | Path, audio: str | Path, output: str | Path, **options: Any) -> Path:
        """Dub ``source_video`` with ``audio`` through the shared loop (docs/gsmoothface.md, "Dubbing"); options: the
        loop's, ``speaker``, ``seed`` and ``progress``."""
        hooks = self.dubbing_hooks(speaker=options.get("speaker"))
        return dub(hooks, source_video, audio, output, GSMOOTHFACE_OPTIONS, **options)
