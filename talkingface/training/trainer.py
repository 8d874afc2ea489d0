"""The training loop shared by every model."""
from __future__ import annotations

import gc
import logging
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch.utils.data import DataLoader, Dataset

from ..config import Config
from ..device import resolve_device
from ..errors import ConfigError
from ..log import progress_bar
from ..seeding import capture_rng_state, restore_rng_state
from .checkpointing import load_training_checkpoint, save_training_checkpoint
from .distributed import all_reduce_means, barrier, broadcast_module, init_distributed
from .optimization import OptimizationContext
from .sampler import ResumableSampler, SeededDataset
from .scalars import ScalarLog, plot_scalars

if TYPE_CHECKING:  # the contract the trainer runs; models sit above training (docs/architecture.md)
    from ..models.base import TalkingFaceModel

logger = logging.getLogger(__name__)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a nested dict/list/tuple batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


class CollectingLoader(DataLoader):
    """A DataLoader that runs the garbage collector before it forks its workers: an object that frees threads it owns
    (PyAV's filter graphs, left in a reference cycle) must be freed here, where its threads exist; collected in a
    forked worker, it waits forever on a thread that was not copied (a hang seen in CI, docs/training.md)."""

    def __iter__(self):
        if self.num_workers > 0:
            gc.collect()
        return super().__iter__()


def _amp_dtype(name: str) -> torch.dtype:
    dtypes = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if name not in dtypes:
        raise ConfigError(f"train.amp_dtype must be one of {sorted(dtypes)}, got {name!r}")
    return dtypes[name]


class Trainer:
    """Runs a ``TalkingFaceModel``'s steps: device, AMP, accumulation, validation, checkpoints,
    exact resume, progress, scalar logs and torch.distributed data parallelism.

    Reads the ``train`` section of the config (see ``configs/overall.yaml``).
    """

    def __init__(self, model: TalkingFaceModel, config: Config, run_dir: str | Path):
        self.config = config
        self.opts = config["train"]
        self.run_dir = Path(run_dir)
        self.device = resolve_device(config["device"])
        self.dist = init_distributed(self.device, self.opts["distributed_backend"])
        self.model = model.to(self.device)
        broadcast_module(self.model)
        amp = bool(self.opts["amp"]) and self.device.type == "cuda"
        self.model.optimization = OptimizationContext(
            amp=amp, amp_dtype=_amp_dtype(self.opts["amp_dtype"]),
            accumulation=int(self.opts["accumulate_grad_batches"]), device_type=self.device.type,
            clip_grad_norm=self.opts["clip_grad_norm"])
        spec = self.model.configure_optimizers()
        self.optimizers = dict(spec.get("optimizers", {}))
        self.model.optimizers = self.optimizers
        self.schedulers = dict(spec.get("schedulers", {}))
        if not self.optimizers:
            raise ConfigError(f"{type(model).__name__}.configure_optimizers() returned no optimizers")
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.step = 0
        self.epoch = 0
        self.batches_done = 0  # micro-batches finished in the current epoch
        self.best: float | None = None

    # ---- checkpoints -------------------------------------------------------------------------
    def _loop_state(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "batches_done": self.batches_done, "best": self.best,
                "micro_step": self.model.optimization.micro_step}

    def save(self, name: str) -> Path | None:
        """Write ``checkpoints/<name>.pth`` on the main process."""
        path = None
        if self.dist.is_main:
            path = save_training_checkpoint(self.checkpoint_dir / f"{name}.pth", self.model, self.optimizers,
                                            self.schedulers, self.model.optimization.scaler,
                                            self._loop_state(), capture_rng_state())
        barrier()
        return path

    def resume(self, path: str | Path) -> None:
        """Restore model, optimizers, schedulers, AMP scaler, loop position and RNG from ``path``."""
        checkpoint = load_training_checkpoint(path, self.model, self.optimizers, self.schedulers,
                                              self.model.optimization.scaler)
        loop = checkpoint["loop"]
        self.step, self.epoch, self.batches_done, self.best = (loop["step"], loop["epoch"],
                                                               loop["batches_done"], loop["best"])
        self.model.optimization.micro_step = loop["micro_step"]
        restore_rng_state(checkpoint["rng"])
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch, self.batches_done)

    # ---- loop --------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, shuffle: bool, drop_last: bool) -> tuple[DataLoader, ResumableSampler]:
        batch_size = int(self.opts["batch_size"])
        sampler = ResumableSampler(len(dataset), batch_size, shuffle=shuffle, seed=int(self.config["seed"]),
                                   rank=self.dist.rank, world_size=self.dist.world_size, drop_last=drop_last)
        if sampler.batches_per_epoch() == 0:
            raise ConfigError(f"dataset of {len(dataset)} samples is smaller than train.batch_size={batch_size} "
                              f"x {self.dist.world_size} process(es)")
        workers = int(self.config["data"]["num_workers"])
        loader = CollectingLoader(SeededDataset(dataset), batch_size=batch_size, sampler=sampler, num_workers=workers,
                            pin_memory=self.device.type == "cuda", persistent_workers=False,
                            generator=torch.Generator().manual_seed(int(self.config["seed"])), drop_last=drop_last)
        return loader, sampler

    def total_steps(self, batches_per_epoch: int) -> int:
        if self.opts["max_steps"] is not None:
            return int(self.opts["max_steps"])
        return int(self.opts["epochs"]) * (batches_per_epoch // int(self.opts["accumulate_grad_batches"]))

    def fit(self, train_set: Dataset, val_set: Dataset | None = None, resume: str | Path | None = None) -> dict:
        """Train until ``max_steps`` optimizer steps (or ``epochs`` epochs); returns the latest scalars."""
        if resume:
            self.resume(resume)
        loader, sampler = self._loader(train_set, shuffle=True, drop_last=True)
        accumulation = int(self.opts["accumulate_grad_batches"])
        if sampler.batches_per_epoch() < accumulation:
            raise ConfigError(f"an epoch has {sampler.batches_per_epoch()} batches, fewer than "
                              f"train.accumulate_grad_batches={accumulation}")
        total = self.total_steps(sampler.batches_per_epoch())
        scalars = ScalarLog(self.run_dir / "scalars.csv", resume_from_step=self.step if resume else None) \
            if self.dist.is_main else None
        val_every, ckpt_every = self.opts["val_every_steps"], self.opts["checkpoint_every_steps"]
        log_every = max(int(self.opts["log_every_steps"]), 1)
        window: dict[str, list[float]] = defaultdict(list)
        latest: dict[str, float] = {}
        saved_at = self.step if resume else -1
        validated_at = -1
        progress = progress_bar(total, f"train {self.model.registered_name}", "step",
                                enabled=self.dist.is_main and bool(self.config["progress"]), initial=self.step)
        started, start_step = time.monotonic(), self.step
        self.model.train()
        while self.step < total:
            sampler.set_epoch(self.epoch, self.batches_done)
            for batch in loader:
                logs = self.model.training_step(move_to_device(batch, self.device), self.step)
                at_boundary = self.model.optimization.at_boundary
                self.model.optimization.finish_micro_step()
                self.batches_done += 1
                for name, value in (logs or {}).items():
                    window[name].append(float(value))
                if not at_boundary:
                    continue
                self.step += 1
                progress.update(1)
                if self.step % log_every == 0 or self.step == total:
                    means = {f"train/{k}": sum(v) / len(v) for k, v in window.items()}
                    window.clear()
                    self._check_finite(means)
                    latest.update(means)
                    progress.set_postfix({k[6:]: f"{v:.4g}" for k, v in list(means.items())[:4]})
                    if scalars:
                        scalars.log(self.step, self.epoch, means)
                final = self.step >= total  # validated too, so the last checkpoint's monitor is current
                if val_set is not None and ((val_every and self.step % int(val_every) == 0) or final):
                    latest.update(self.validate(val_set, scalars))
                    validated_at = self.step
                if ckpt_every and self.step % int(ckpt_every) == 0:
                    saved_at = self._checkpoint(latest)
                if self.step >= total:
                    break
            if self.batches_done >= sampler.batches_per_epoch():  # the epoch ran to its end
                self.epoch += 1
                self.batches_done = 0
                for scheduler in self.schedulers.values():
                    scheduler.step()
                if val_set is not None and not val_every and validated_at != self.step:
                    latest.update(self.validate(val_set, scalars))
                    validated_at = self.step
                if not ckpt_every:
                    saved_at = self._checkpoint(latest)
        progress.close()
        if saved_at != self.step:
            self._checkpoint(latest)
        if scalars:
            plot_scalars(scalars, self.run_dir / "loss.png")
        elapsed = time.monotonic() - started
        logger.info("trained steps %d-%d in %.1f s; checkpoints in %s", start_step, self.step, elapsed,
                    self.checkpoint_dir)
        return {"step": self.step, "epoch": self.epoch, "best": self.best, **latest}

    @staticmethod
    def _check_finite(means: Mapping[str, float]) -> None:
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"non-finite training losses: {', '.join(bad)}; lower the learning rate "
                                     "or disable AMP")

    def _monitored(self, metrics: Mapping[str, float]) -> float | None:
        key = self.opts["monitor"]
        if key == "auto":
            key = "val/loss" if "val/loss" in metrics else "train/loss"
        return metrics.get(key)

    def _checkpoint(self, metrics: Mapping[str, float]) -> int:
        """Save ``best`` when the monitored value improved, then ``last``; returns the step."""
        value = self._monitored(metrics)
        if value is not None:
            better = self.best is None or (value < self.best if self.opts["monitor_mode"] == "min"
                                           else value > self.best)
            if better:
                self.best = float(value)
                self.save("best")
        self.save("last")
        return self.step

    @torch.no_grad()
    def validate(self, val_set: Dataset, scalars: ScalarLog | None = None) -> dict[str, float]:
        """Mean of ``validation_step`` over the validation set (across processes); RNG untouched."""
        loader, _ = self._loader(val_set, shuffle=False, drop_last=False)
        sums: dict[str, float] = defaultdict(float)
        count = 0
        self.model.eval()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            for batch in loader:
                logs = self.model.validation_step(move_to_device(batch, self.device))
                if logs is None:
                    break
                for name, value in logs.items():
                    sums[name] += float(value)
                count += 1
        self.model.train()
        means = {f"val/{k}": v / count for k, v in sums.items()} if count else {}
        means = all_reduce_means(means, count, self.device)
        if means:
            logger.info("step %d validation: %s", self.step, ", ".join(f"{k}={v:.4g}" for k, v in means.items()))
            if scalars:
                scalars.log(self.step, self.epoch, means)
        return means
