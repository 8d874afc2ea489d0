"""The recipes behind the CLI: preprocess, train, evaluate, infer, and ``run`` (all of them).

``run(model=..., dataset=..., config={...})`` does exactly what ``run_talkingface.py`` does and
returns the results dict.
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from .checkpoint import is_native_checkpoint, read_checkpoint
from .config import Config, config_root, load_config, read_yaml
from .data import ClipStore
from .errors import CheckpointError, ConfigError, DataError
from .evaluation import EvaluationResult, Evaluator
from .evaluation.split import build_control_evaluator, evaluate_split, summary_row
from .evaluation.report import results_table
from .io_utils import atomic_write_json
from .log import setup_logging
from .models.base import TalkingFaceModel
from .registry import DATASETS, MODELS
from .training import Trainer, resolve_device, seed_everything
from .training.distributed import DistributedInfo, distributed_info, init_distributed, shutdown_distributed

logger = logging.getLogger("talkingface")


def build_model(name: str, config: Config | Mapping | None = None,
                checkpoint: str | Path | None = None) -> TalkingFaceModel:
    """Instantiate the registered model ``name``; a plain dict is layered over the model's defaults.

    A dict holding only the model's own options may be given flat: ``build_model("dinet",
    {"mouth_region_size": 256})`` is ``build_model("dinet", {"dinet": {"mouth_region_size": 256}})``.
    ``checkpoint`` (ours or an official release) is loaded strictly with ``load_checkpoint``.
    """
    if not isinstance(config, Config):
        config = load_config(model=name, config=_nested_model_options(name, config))
    model = MODELS.get(name)(config)
    if not isinstance(model, TalkingFaceModel):
        raise ConfigError(f"registered model {name!r} is not a TalkingFaceModel")
    if checkpoint is not None:
        model.load_checkpoint(checkpoint)
    return model


def _nested_model_options(name: str, config: Mapping | None) -> Mapping | None:
    """``config`` under the model's own section when every key is one of that section's options and none
    is a top-level key; otherwise ``config`` unchanged."""
    if not config:
        return config
    cls = MODELS.get(name)
    section = cls.registered_name or name
    defaults = load_config(model=section)  # the model's default_config and configs/model/<name>.yaml
    own = defaults[section] if section in defaults else {}
    top_level = read_yaml(config_root() / "overall.yaml")
    if isinstance(own, Mapping) and all(k in own and k not in top_level and k != section for k in config):
        return {section: dict(config)}
    return config


def _join_process_group(config: Config) -> DistributedInfo:
    """Join the torchrun process group when there is one (idempotent); returns this process's rank info."""
    info = distributed_info()
    if info.enabled:
        init_distributed(resolve_device(config["device"]), config["train"]["distributed_backend"])
    return info


def resumed_run_dir(resume: str | Path) -> Path:
    """The run folder ``train.resume`` continues: the folder itself, the run of ``<run>/checkpoints/last.pth``,
    or the run of a stage's ``<run>/stages/<k>-<name>/checkpoints/last.pth``."""
    path = Path(resume).resolve()
    if path.is_dir():
        return path
    run = path.parent.parent
    return run.parent.parent if run.parent.name == STAGES_DIR else run


def _run_dir(config: Config, kind: str) -> Path:
    """``<saved_dir>/<model>-<dataset>-<timestamp>``, the same on every process of a torchrun job."""
    resume = config["train"]["resume"] if "train" in config else None
    if resume:
        return resumed_run_dir(resume)  # continue in the run the checkpoint came from
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = "-".join(str(x) for x in (config["model"], config["dataset"], kind if kind != "run" else None, stamp)
                    if x)
    path = Path(config["saved_dir"]) / name
    info = _join_process_group(config)
    if info.enabled:
        import torch.distributed as dist

        holder = [str(path)]
        dist.broadcast_object_list(holder, src=0)
        path = Path(holder[0])
    if info.is_main:
        suffix = 1
        while path.exists() and not info.enabled:
            path = path.with_name(f"{name}-{suffix}")
            suffix += 1
        path.mkdir(parents=True, exist_ok=True)
    return path


def _start(config: Config, kind: str) -> Path:
    run_dir = _run_dir(config, kind)
    info = distributed_info()
    setup_logging(config["log_level"], run_dir / "run.log", rank=info.rank)
    if info.is_main:
        config.save(run_dir / "config.yaml")
    seed_everything(int(config["seed"]))
    logger.info("run folder: %s", run_dir)
    return run_dir


def preprocess(dataset: str, config: Config | Mapping | None = None, force: bool = False) -> ClipStore:
    """Build (or reuse) the processed clip store of ``dataset``."""
    if not isinstance(config, Config):
        config = load_config(dataset=dataset, config=config)
    layout = DATASETS.get(dataset)(config)
    info = _join_process_group(config)
    if info.enabled:  # one process preprocesses, the others wait for it
        from .training.distributed import barrier

        if info.is_main:
            layout.prepare(force=force)
        barrier()
        return ClipStore(layout.store_root)
    return layout.prepare(force=force)


def _split_or_none(model: TalkingFaceModel, store: ClipStore, split: str) -> Any:
    try:
        clips = store.split_names(split)
    except DataError:
        return None
    return model.build_dataset(store, split) if clips else None


def train(model: TalkingFaceModel, store: ClipStore, config: Config, run_dir: Path) -> dict:
    """Fit ``model`` on the store's train split (validating on val when present); a model with a
    multi-stage ``recipe()`` trains its stages in order (``train_recipe``)."""
    if model.recipe():
        return train_recipe(model, store, config, run_dir)
    if config["stage"] is not None:
        raise ConfigError(f"stage={config['stage']!r} given, but model {config['model']!r} has no training stages")
    trainer = Trainer(model, config, run_dir)
    train_set = model.build_dataset(store, "train")
    val_set = _split_or_none(model, store, "val")
    resume = config["train"]["resume"]
    return trainer.fit(train_set, val_set, resume=resume if resume and Path(resume).is_file() else None)


STAGES_DIR = "stages"
STAGE_DONE = "stage.json"


def final_weights(stage_dir: Path) -> Path:
    """A finished stage's weights: ``best.pth`` when validation picked one, else ``last.pth``."""
    best = stage_dir / "checkpoints" / "best.pth"
    return best if best.exists() else stage_dir / "checkpoints" / "last.pth"


def train_recipe(model: TalkingFaceModel, store: ClipStore, config: Config, run_dir: Path) -> dict:
    """Train the model's stages in order, each with a fresh Trainer in ``<run>/stages/<k>-<name>/``.

    A stage whose ``stage.json`` exists finished earlier in this run folder and is skipped; a stage with a
    ``last.pth`` resumes from it. Each stage starts from the previous stage's final weights (the first
    trained one from ``train.init_from``), and ``stage`` selects a single stage. Afterwards the model holds
    the last trained stage's final weights.
    """
    stages = list(model.recipe())
    selected = config["stage"]
    if selected is not None and selected not in stages:
        raise ConfigError(f"stage={selected!r} is not a stage of {config['model']!r}; its stages are "
                          f"{', '.join(stages)}")
    init_from = config["train"]["init_from"]
    previous = Path(init_from) if init_from else None
    if previous is not None and not previous.is_file():
        raise CheckpointError(f"train.init_from {previous} not found")
    results: dict[str, Any] = {}
    for index, stage in enumerate(stages):
        if selected is not None and stage != selected:
            continue
        stage_dir = run_dir / STAGES_DIR / f"{index}-{stage}"
        done = stage_dir / STAGE_DONE
        if done.exists():
            logger.info("stage %s finished earlier in %s; reusing its weights", stage, stage_dir)
            results[stage] = json.loads(done.read_text(encoding="utf-8"))["result"]
            previous = final_weights(stage_dir)
            continue
        overrides = dict(model.enter_stage(stage, previous) or {})
        stage_config = config.updated(overrides, f"stage {stage}") if overrides else config
        logger.info("stage %d/%d: %s in %s", index + 1, len(stages), stage, stage_dir)
        last = stage_dir / "checkpoints" / "last.pth"
        trainer = Trainer(model, stage_config, stage_dir)
        train_set = model.build_dataset(store, "train")
        val_set = _split_or_none(model, store, "val")
        results[stage] = trainer.fit(train_set, val_set, resume=last if last.exists() else None)
        previous = final_weights(stage_dir)
        if distributed_info().is_main:
            atomic_write_json(done, {"stage": stage, "weights": str(previous), "result": results[stage]})
    if previous is not None:
        model.load_checkpoint(previous)
    return results


def run(model: str, dataset: str, config: Mapping | None = None, config_files: Iterable[str | Path] = (),
        cli_overrides: Mapping | None = None) -> dict[str, Any]:
    """Preprocess if needed -> train -> evaluate on the test split -> print and save the results.

    Returns ``{"run_dir", "train", "evaluate", "skipped"}``.
    """
    cfg = load_config(model, dataset, config_files, config, cli_overrides)
    try:
        return _run(cfg, _start(cfg, "run"))
    finally:
        shutdown_distributed()


def _run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    model, dataset = cfg["model"], cfg["dataset"]
    store = preprocess(dataset, cfg)
    net = build_model(model, cfg)
    results: dict[str, Any] = {"run_dir": str(run_dir), "model": cfg["model"], "dataset": cfg["dataset"]}
    if cfg["train"]["enabled"]:
        results["train"] = train(net, store, cfg, run_dir)
        best = run_dir / "checkpoints" / "best.pth"
        if best.exists() and not net.recipe():
            net.load_checkpoint(best)
    else:
        net.to(resolve_device(cfg["device"]))
    if cfg["evaluate"]["enabled"] and distributed_info().is_main:
        evaluation = evaluate_split(net, store, cfg, run_dir / "evaluation")
        results["evaluate"] = evaluation.result.summary
        results["skipped"] = evaluation.result.skipped
        if evaluation.control is not None:
            results["control"] = {"audio_shift": evaluation.control_shift, "evaluate": evaluation.control.summary,
                                  "skipped": evaluation.control.skipped}
        results["strips"] = [str(path) for path in evaluation.strips]
        print(results_table(evaluation.table_rows(f"{cfg['model']} on {cfg['dataset']}")))
    if distributed_info().is_main:
        atomic_write_json(run_dir / "results.json", results)
    return results


def evaluate_checkpoints(model: str, dataset: str, checkpoints: str, config: Mapping | None = None,
                         config_files: Iterable[str | Path] = (), cli_overrides: Mapping | None = None) -> dict:
    """Generate the test split with every checkpoint matching the glob and score them with one protocol."""
    paths = sorted(Path(p) for p in glob.glob(checkpoints, recursive=True))
    if not paths:
        raise CheckpointError(f"no checkpoint matches {checkpoints!r}")
    cfg = load_config(model, dataset, config_files, config, cli_overrides)
    run_dir = _start(cfg, "evaluate")
    store = preprocess(dataset, cfg)
    device = resolve_device(cfg["device"])
    table: dict[str, dict] = {}
    evaluator = Evaluator(cfg["evaluate"]["metrics"], cfg, progress=bool(cfg["progress"]))  # networks load once
    control = build_control_evaluator(cfg)
    for index, path in enumerate(paths):
        net = build_model(model, cfg).load_checkpoint(path).to(device)
        evaluation = evaluate_split(net, store, cfg, run_dir / f"{index:03d}-{path.stem}", evaluator, control)
        table.update(evaluation.table_rows(str(path)))
    atomic_write_json(run_dir / "comparison.json", table)
    print(results_table(table))
    return {"run_dir": str(run_dir), "checkpoints": table}


def evaluate_videos(videos: str | Path, references: str | Path | None = None, metrics: Iterable[str] | None = None,
                    output: str | Path | None = None, progress: bool = True, config: Mapping | None = None,
                    config_files: Iterable[str | Path] = (), cli_overrides: Mapping | None = None) -> EvaluationResult:
    """Score every ``*.mp4`` in ``videos`` (against the same file name in ``references`` when given).

    ``metrics`` default to ``evaluate.metrics``; the ``evaluate`` options (protocols, region, weights) come
    from the layered config. Without references, metrics that need them are reported as skipped.
    """
    cfg = load_config(None, None, config_files, config, cli_overrides)
    videos = Path(videos)
    if not videos.is_dir():
        raise DataError(f"{videos} is not a folder of videos")
    generated = sorted(videos.glob("*.mp4"))
    if not generated:
        raise DataError(f"{videos} holds no .mp4 files")
    pairs = []
    for path in generated:
        reference = Path(references) / path.name if references else None
        if reference is not None and not reference.is_file():
            raise DataError(f"reference {reference} for {path} not found")
        pairs.append((path.stem, path, reference))
    output_dir = Path(output) if output else videos
    names = list(metrics) if metrics else list(cfg["evaluate"]["metrics"])
    result = Evaluator(names, cfg, progress=progress).evaluate(pairs, resume_file=output_dir / "rows.jsonl")
    result.save(output_dir)
    print(results_table({str(videos): summary_row(result)}))
    return result


def infer(model: str, checkpoint: str | Path, video: str | Path, audio: str | Path, out: str | Path,
          config: Mapping | None = None, config_files: Iterable[str | Path] = (),
          cli_overrides: Mapping | None = None, **options: Any) -> Path:
    """Dub ``video`` with ``audio`` using ``checkpoint`` (a weights file or a run folder, ``trained_config``) and
    write ``out``."""
    weights, cfg = trained_config(model, checkpoint, config_files, config, cli_overrides)
    setup_logging(cfg["log_level"])
    net = build_model(model, cfg).load_checkpoint(weights).to(resolve_device(cfg["device"])).eval()
    with torch.no_grad():
        return net.generate(video, audio, out, **options)


def trained_config(model: str, checkpoint: str | Path, config_files: Iterable[str | Path] = (),
                   config: Mapping | None = None, cli_overrides: Mapping | None = None) -> tuple[Path, Config]:
    """``(weights file, config)`` for dubbing with ``checkpoint`` (``infer``, ``serve``): a weights file, or a run
    folder (its last stage's final weights). The configuration the weights were trained with (the run's
    ``config.yaml``, or the one a talkingface checkpoint carries) is the first layer under ``config_files``,
    ``config`` and ``cli_overrides``, so a model trained at other sizes loads without repeating its settings."""
    import yaml

    weights, trained_with = resolve_checkpoint(checkpoint)
    layer = dict(yaml.safe_load(trained_with) or {}) if trained_with is not None else {}
    dataset = layer.pop("dataset", None)  # its section is part of the layer; model and dataset are not options
    for derived in ("model", "config_sources"):  # set by load_config itself
        layer.pop(derived, None)
    with contextlib.ExitStack() as stack:
        files = list(config_files)
        if layer:
            stored = stack.enter_context(tempfile.TemporaryDirectory(prefix="talkingface-infer-"))
            # named after the checkpoint: a key this version no longer knows is reported against it
            files.insert(0, Path(stored) / f"{Path(checkpoint).name}.trained-config.yaml")
            files[0].write_text(yaml.safe_dump(layer, sort_keys=False), encoding="utf-8")
        cfg = load_config(model, dataset if isinstance(dataset, str) else None, files, config, cli_overrides)
    return weights, cfg


def run_weights(run_dir: Path) -> Path:
    """The final weights of a run folder: its last finished stage's (``stages/<k>-<name>``), else its own
    ``checkpoints/best.pth`` or ``last.pth``."""
    stages = sorted((d for d in (run_dir / STAGES_DIR).glob("*-*") if (d / STAGE_DONE).is_file()),
                    key=lambda d: int(d.name.split("-", 1)[0])) if (run_dir / STAGES_DIR).is_dir() else []
    weights = final_weights(stages[-1]) if stages else final_weights(run_dir)
    if not weights.is_file():
        raise CheckpointError(f"{run_dir} is a folder without trained weights (no finished stage, no "
                              f"checkpoints/best.pth or last.pth)")
    return weights


def resolve_checkpoint(checkpoint: str | Path) -> tuple[Path, str | None]:
    """``(weights file, YAML of the configuration they were trained with or None)`` of a file or a run folder."""
    path = Path(checkpoint)
    if path.is_dir():
        config_file = path / "config.yaml"
        return run_weights(path), config_file.read_text(encoding="utf-8") if config_file.is_file() else None
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        return path, None
    stored = read_checkpoint(path)
    text = stored.get("config") if is_native_checkpoint(stored) else None
    return path, text if isinstance(text, str) else None
