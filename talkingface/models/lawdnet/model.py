"""The registered ``lawdnet`` model: LawDNet's networks on DINet's recipe machinery, with its own crops, losses,
optimizer, SyncNet feed and dubbing hooks (docs/lawdnet.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ...dubbing import LOOP_OPTIONS, dub
from ...errors import CheckpointError
from ...registry import register_model
from ...weights import KnownWeights
from ..dinet.model import DINet, audio_width
from ..dinet.releases import SYNCNET_256
from .data import LAWDNET_CROPS
from .dubbing import LAWDNET_OPTIONS, LawDNetDubbing
from .networks.container import LawDNetNetworks
from .releases import CLIP_288, RELEASES


@register_model("lawdnet")
class LawDNet(DINet):
    """LawDNet (iPaw-AI-LAB/LawDNet_2024, arXiv 2409.09326). See docs/lawdnet.md.

    ``generator(source (B,3,H,W), refs (B,15,H,W), audio (B,C,5))`` is the official ``LawDNet`` (local affine
    warps, cross-attention; C = 29 for DeepSpeech2 or DeepSpeech features), H×W = 13M/8 × 5M/4 frontalised crops
    (468 × 360 at mouth 288). Training follows DINet's stages (``lawdnet.recipe``: frames 64 → 128 → 256, then
    the clip stage at 288 with DINet's frozen SyncNet) with LawDNet's losses (+ pixel MSE) and AdamW.
    """

    # The defaults live in configs/model/lawdnet.yaml.
    section = "lawdnet"
    crop_style = LAWDNET_CROPS
    optimizer_class = torch.optim.AdamW
    default_dataset = "demo"
    releases = RELEASES
    smoke_config = {"demo": {"clips": 3}, "preprocess": {"features": ["mfcc"]},
                    "lawdnet": {"mouth_region_size": 64, "audio_feature": "mfcc", "sync_audio_feature": "mfcc"}}

    def build_networks(self) -> LawDNetNetworks:
        opts = self.options
        return LawDNetNetworks(int(opts["mouth_region_size"]), audio_channel=self.audio_channels,
                               syncnet_audio_channel=audio_width(self.config, self.section, "sync_audio_feature"),
                               scrambled_grid=bool(opts["scrambled_grid"]),
                               skip_dead_layers=bool(opts["skip_dead_layers"]))

    # ---- stages ------------------------------------------------------------------------------
    def enter_stage(self, stage: str, previous: Path | None) -> Mapping[str, Any]:
        """DINet's stage switch; the clip stage then loads the frozen SyncNet (``lawdnet.syncnet_weights``,
        default ``checkpoints/syncnet_256mouth.pth``) unless the recipe trained one in an earlier stage."""
        overrides = super().enter_stage(stage, previous)
        if self.settings.kind == "clip" and not self._recipe_trains_syncnet_before(stage):
            self.load_syncnet()
        return overrides

    def _recipe_trains_syncnet_before(self, stage: str) -> bool:
        recipe = self.recipe()
        earlier = recipe[:recipe.index(stage)] if stage in recipe else []
        return any(name.startswith("syncnet") for name in earlier)

    def load_syncnet(self, path: str | Path | None = None) -> None:
        """Load DINet's released SyncNet (the official layout) into ``networks.syncnet``."""
        path = Path(path or self.options["syncnet_weights"] or SYNCNET_256.default_path())
        reason = SYNCNET_256.missing_reason(path)
        if reason is not None:
            raise CheckpointError(f"LawDNet's clip stage scores lip sync with DINet's released SyncNet: {reason} "
                                  f"(or put a `syncnet` stage before `clip` in lawdnet.recipe to train one)")
        self.load_checkpoint(path)

    # ---- checkpoints -------------------------------------------------------------------------
    def release_example(self, release: KnownWeights) -> dict:
        """DINet's layout; ``checkpoint_epoch_170.pth`` also holds the AdamW and LambdaLR states by network."""
        example = super().release_example(release)
        if release is CLIP_288:
            example["epoch"] = 170
            optimizers = {entry: self.optimizer_class(self.get_submodule(fill).parameters(), lr=1e-4)
                          for entry, fill in zip(("net_g", "net_dI", "net_dV"), release.fills)}
            example["optimizer"] = {entry: opt.state_dict() for entry, opt in optimizers.items()}
            example["scheduler"] = {entry: torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0).state_dict()
                                    for entry, opt in optimizers.items()}
        return example

    # ---- inference ---------------------------------------------------------------------------
    generate_options = (*LOOP_OPTIONS, *LAWDNET_OPTIONS)

    def dubbing_hooks(self, paste: str | None = None, feather: float | None = None, **_: Any) -> LawDNetDubbing:
        return LawDNetDubbing(self, paste, feather)

    def generate(self, source_video: str | Path, audio: str | Path, output: str | Path, **options: Any) -> Path:
        """Dub ``source_video`` with ``audio`` through the shared loop (docs/lawdnet.md); options:
        ``generate_options`` (``fps``, ``face``, ``batch``, ``paste``, ``feather``), ``seed`` and ``progress``."""
        return dub(self.dubbing_hooks(**options), source_video, audio, output, LAWDNET_OPTIONS, **options)
