"""Multi-stage (coarse-to-fine) recipes: stage names, per-stage settings and the official learning-rate
schedule of DINet and LawDNet (``<section>.stages.<name>`` in the model's config)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ...errors import ConfigError

STAGE_KINDS = ("syncnet", "frame", "clip")


@dataclass(frozen=True)
class StageSettings:
    """One stage of the recipe: what it trains (``kind``), at which mouth size, how much data and how long."""

    name: str
    kind: str  # syncnet | frame | clip
    mouth: int
    augment_num: int
    batch_size: int | None
    epochs: int | None
    non_decay: int
    decay: int

    def overrides(self) -> dict[str, Any]:
        """Config overrides the pipeline layers over the run's config for this stage."""
        train: dict[str, Any] = {}
        if self.epochs is not None:
            train["epochs"] = int(self.epochs)
        if self.batch_size is not None:
            train["batch_size"] = int(self.batch_size)
        return {"train": train} if train else {}


def stage_kind(name: str) -> str:
    """``syncnet`` -> syncnet, ``frame64`` -> frame, ``clip`` -> clip (by prefix)."""
    for kind in STAGE_KINDS:
        if name.startswith(kind):
            return kind
    raise ConfigError(f"stage {name!r}: the name must start with one of {', '.join(STAGE_KINDS)}")


def stage_settings(name: str, options: Mapping[str, Any], section: str,
                   check_mouth: Callable[[int], int]) -> StageSettings:
    """The settings of stage ``name`` from the model's config section ``section`` (``<section>.stages.<name>``);
    ``check_mouth`` validates the stage's mouth size (and raises ConfigError)."""
    stages = options["stages"]
    if name not in stages:
        raise ConfigError(f"{section} stage {name!r} has no settings under {section}.stages "
                          f"(known: {', '.join(stages)})")
    entry = stages[name]
    try:
        mouth = check_mouth(int(entry["mouth"]))
        settings = StageSettings(name, stage_kind(name), mouth, int(entry["augment_num"]),
                                 None if entry["batch_size"] is None else int(entry["batch_size"]),
                                 None if entry["epochs"] is None else int(entry["epochs"]),
                                 int(entry["non_decay"]), int(entry["decay"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{section}.stages.{name}: needs mouth, augment_num, batch_size, epochs, non_decay, "
                          f"decay ({exc})") from exc
    if settings.augment_num < 1 or settings.non_decay < 0 or settings.decay < 0:
        raise ConfigError(f"{section}.stages.{name}: augment_num must be >= 1 and non_decay/decay >= 0")
    return settings


def default_stage(options: Mapping[str, Any], section: str, check_mouth: Callable[[int], int]) -> StageSettings:
    """The stage a model that entered none trains: the frame stage at ``<section>.mouth_region_size``.

    Its data/schedule settings come from ``<section>.stages.frame<M>`` when that exists; batch size and
    epochs are left to the ``train`` section.
    """
    mouth = check_mouth(int(options["mouth_region_size"]))
    name = f"frame{mouth}"
    if name in options["stages"]:
        base = stage_settings(name, options, section, check_mouth)
        return StageSettings(name, "frame", mouth, base.augment_num, None, None, base.non_decay, base.decay)
    return StageSettings(name, "frame", mouth, 1, None, None, 200, 200)


def lr_factor(epoch: int, non_decay: int, decay: int) -> float:
    """DINet's ``train_DINet_*.py`` LambdaLR (LawDNet keeps it): 1 for ``non_decay`` epochs, then linearly down over ``decay + 1``.

    Clamped at 0 (the release's factor turns negative past ``non_decay + decay + 1`` epochs).
    """
    return max(0.0, 1.0 - max(0, epoch - non_decay) / float(decay + 1))
