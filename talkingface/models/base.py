"""The plugin contract every model implements: ``TalkingFaceModel``."""
from __future__ import annotations

import abc
import contextlib
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping

import torch
from torch import nn

from ..config import Config, config_root, load_config, read_yaml
from ..registry import MODELS
from ..errors import CheckpointError, ConfigError
from ..checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, is_native_checkpoint,
                         load_state_dict_strict, read_release)
from ..dubbing import DubbingHooks
from ..training.optimization import OptimizationContext
from ..weights import KnownWeights

OptimizerSpec = Mapping[str, torch.optim.Optimizer]


class TalkingFaceModel(nn.Module, metaclass=abc.ABCMeta):
    """Base class of talking-face models.

    A model knows *what* a step is; the Trainer knows *how* to run it (device, AMP, accumulation,
    distributed gradient averaging, checkpoints). Models use manual optimisation, as GANs need
    several optimizer steps per batch: inside ``training_step`` call ``self.backward(loss)`` and
    ``self.optimizer_step(optimizer)`` instead of ``loss.backward()`` / ``optimizer.step()``.

    Subclasses keep their config keys and defaults in ``configs/model/<name>.yaml`` (or ``default_config``)
    and implement ``configure_optimizers``, ``training_step``, ``build_dataset`` and ``generate``. A config
    without the model's own section gets the model's defaults layered in here.
    """

    default_config: ClassVar[dict] = {}
    registered_name: ClassVar[str] = ""
    default_dataset: ClassVar[str | None] = None  # what it trains on out of the box (smoke tests use it)
    # config overrides that make one training step and one generate on ``default_dataset`` take seconds on a
    # CPU (tests/test_models.py layers them over its tiny run settings)
    smoke_config: ClassVar[dict] = {}
    # the authors' released weight files this model loads (``fills`` names the submodules each one loads)
    releases: ClassVar[tuple[KnownWeights, ...]] = ()

    def __init__(self, config: Config | Mapping | None = None):
        super().__init__()
        self.config = config if isinstance(config, Config) else Config(config or {})
        name = self.registered_name
        if name and name in MODELS and any(key not in self.config for key in self._own_sections()):
            self.config = load_config(model=name, config=self.config.to_dict())
        self.optimization = OptimizationContext()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}  # filled by the trainer

    @classmethod
    def _own_sections(cls) -> set[str]:
        """Top-level keys of the model's defaults (``default_config`` and ``configs/model/<name>.yaml``)."""
        path = config_root() / "model" / f"{cls.registered_name}.yaml"
        return set(cls.default_config) | (set(read_yaml(path)) if path.is_file() else set())

    # ---- training contract -------------------------------------------------------------------
    @abc.abstractmethod
    def configure_optimizers(self) -> dict[str, Any]:
        """Return ``{"optimizers": {name: Optimizer}, "schedulers": {name: LRScheduler}}``.

        Schedulers are stepped by the trainer once per epoch. Everything returned is checkpointed, and
        the optimizers are available as ``self.optimizers[name]`` inside ``training_step``.
        """

    @abc.abstractmethod
    def training_step(self, batch: Any, step: int) -> dict[str, float]:
        """Run one micro-batch: forward, ``self.backward``, ``self.optimizer_step``; return scalars."""

    def validation_step(self, batch: Any) -> dict[str, float] | None:
        """Scalars for one validation batch (optional; ``None`` disables validation)."""
        return None

    @abc.abstractmethod
    def build_dataset(self, store: Any, split: str) -> torch.utils.data.Dataset:
        """The model-specific sampling over a processed clip store split (``train``/``val``/``test``)."""

    @abc.abstractmethod
    def generate(self, source_video: str | Path, audio: str | Path, output: str | Path, **options: Any) -> Path:
        """Dub ``source_video`` with ``audio`` and write an mp4 with the audio muxed to ``output``."""

    def strip_rows(self, source_video: str | Path, audio: str | Path, generated: str | Path) -> list[tuple[str, Path]]:
        """Extra ``(label, video)`` rows for the evaluation strip of ``generated`` (e.g. an intermediate render the
        model made); none by default."""
        return []

    @classmethod
    def benchmark_config(cls, work: Path) -> dict:
        """Config overrides under which ``talkingface benchmark`` dubs with random weights and no files (it says so in
        its report): the released networks' sizes, with e.g. a registered audio feature in place of one whose weights
        are missing, or a synthetic stand-in face model written into ``work``. None by default."""
        return {}

    def dubbing_hooks(self, **options: Any) -> DubbingHooks | None:
        """This model's hooks into the shared dubbing loop for one dub (or a served template), with its own
        ``generate_options`` resolved; None for a model with a loop of its own (``talkingface serve`` needs hooks)."""
        return None

    # ---- multi-stage recipes ---------------------------------------------------------------------
    def recipe(self) -> list[str]:
        """Ordered names of the training stages (e.g. DINet's ``syncnet, frame64, …, clip``); empty for one stage.

        The pipeline trains each stage with a fresh Trainer in ``<run>/stages/<k>-<name>/`` (resumable),
        calling ``enter_stage`` first; ``--stage=<name>`` trains that stage only.
        """
        return []

    def enter_stage(self, stage: str, previous: Path | None) -> Mapping[str, Any]:
        """Switch to ``stage`` (datasets, optimizers and steps follow it), load what it needs from
        ``previous`` (the previous stage's final weights, ``train.init_from``, or None) and return config
        overrides for the stage, e.g. ``{"train": {"epochs": 200, "batch_size": 12}}``."""
        raise ConfigError(f"model {self.registered_name or type(self).__name__!r} has no training stages")

    # ---- manual optimisation helpers -------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        return torch.device("cpu")

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision around the forward pass when the trainer enabled AMP, else a no-op."""
        return self.optimization.autocast(self.device)

    def backward(self, loss: torch.Tensor, retain_graph: bool = False) -> None:
        """Backward with AMP loss scaling and gradient-accumulation averaging."""
        self.optimization.backward(loss, retain_graph=retain_graph)

    def optimizer_step(self, optimizer: torch.optim.Optimizer, clip_grad_norm: float | None = None) -> bool:
        """Step ``optimizer`` at accumulation boundaries (averaging gradients across processes first,
        then clipping to ``clip_grad_norm`` or ``train.clip_grad_norm``) and zero its gradients;
        returns whether it stepped."""
        return self.optimization.step(optimizer, clip_grad_norm)

    @contextlib.contextmanager
    def frozen(self, *modules: nn.Module) -> Iterator[None]:
        """Disable gradients of ``modules`` inside the block (the discriminator during a G step)."""
        flags = [(p, p.requires_grad) for m in modules for p in m.parameters()]
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)

    def loaded_once(self, key: tuple, load: Callable[[], Any]) -> Any:
        """Things made from files beside the model's own weights (VideoReTalking's enhancement networks, a face model,
        a target video's 3DMM fit), made by ``load`` on first use under ``key`` and reused (an evaluation dubs every
        test clip twice); kept out of the module tree, so never part of a checkpoint."""
        cache = self.__dict__.setdefault("_loaded_once", {})
        if key not in cache:
            cache[key] = load()
        return cache[key]

    # ---- checkpoints -------------------------------------------------------------------------
    def convert_official_checkpoint(self, checkpoint: Any, source: str) -> dict[str, Mapping[str, torch.Tensor]] | None:
        """The authors' released file as ``{submodule: state_dict}`` (timm's ``checkpoint_filter_fn(state_dict,
        model)``); the key ``""`` is the whole model. Submodules the file does not hold are left as they are.

        Return ``None`` when ``checkpoint`` is not an official layout this model knows; raise CheckpointError
        naming ``source`` for a known layout that is damaged.
        """
        return None

    def release_example(self, release: KnownWeights) -> Any:
        """The contents ``release`` would have if the authors' code saved this model's current weights (their
        layout, prefixes and containers): the inverse of ``convert_official_checkpoint``, which the generic
        tests use to check each declared release (tests/test_models.py). Models that declare releases
        implement it."""
        raise NotImplementedError(f"{type(self).__name__} declares releases but no release_example")

    def load_checkpoint(self, path: str | Path, strict: bool = True) -> "TalkingFaceModel":
        """Load our checkpoint format or the authors' release (via ``convert_official_checkpoint``).

        Loads with ``weights_only=True`` (or safetensors; a release that also pickles other objects, such as a
        Lightning ``.ckpt``'s hyper-parameters, through ``checkpoint.read_release``, which runs none of them). With ``strict`` any missing or unexpected key or
        shape mismatch in a loaded submodule raises CheckpointError naming the file, the submodule and the keys.
        """
        checkpoint = read_release(path)
        if is_native_checkpoint(checkpoint):
            saved_model = checkpoint.get("model")
            if saved_model and self.registered_name and saved_model != self.registered_name:
                raise CheckpointError(f"{path} holds a {saved_model!r} checkpoint, not {self.registered_name!r}")
            parts: Mapping[str, Mapping[str, torch.Tensor]] | None = {"": checkpoint["state_dict"]}
        else:
            parts = self.convert_official_checkpoint(checkpoint, str(path))
        if parts is None:
            known = ", ".join(w.filename for w in self.releases) or "none declared"
            raise CheckpointError(f"{path} is neither a talkingface checkpoint nor an official "
                                  f"{self.registered_name or type(self).__name__} release this model can convert "
                                  f"(its releases: {known})")
        for name, state_dict in parts.items():
            module = self.get_submodule(name) if name else self
            if strict:
                load_state_dict_strict(module, state_dict, f"{path} [{name}]" if name else str(path))
            else:
                module.load_state_dict(state_dict, strict=False)
        return self

    def save_weights(self, path: str | Path) -> Path:
        """Write a weights-only checkpoint of this model (no optimizer state), atomically."""
        from ..io_utils import atomic_write

        payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model": self.registered_name,
                   "state_dict": self.state_dict(), "config": self.config.to_yaml()}
        return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def has_dubbing_hooks(cls: type) -> bool:
    """Whether a model class dubs through the shared loop (overrides ``TalkingFaceModel.dubbing_hooks``)."""
    return getattr(cls, "dubbing_hooks", None) is not TalkingFaceModel.dubbing_hooks
