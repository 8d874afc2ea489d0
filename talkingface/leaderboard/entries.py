"""Leaderboard entries: a registered model with a checkpoint (or run folder), or a folder of videos made by any tool.

On the command line an entry is ``LABEL=TARGET``:

- ``dinet=saved/dinet-demo-…/best.pth``: LABEL is a registered model, TARGET its checkpoint or run folder;
- ``dinet-long=dinet:saved/…/best.pth``: another label for a registered model (``MODEL:TARGET``);
- ``wav2lip=outputs/wav2lip/``: TARGET is a folder of ``<clip name>.mp4`` files made by another tool.

A YAML file holds the same as a list under ``entries`` (``name`` and either ``model`` + ``checkpoint`` or
``videos``; a model entry may add ``options``, its generate options such as ``{face: largest}``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..errors import ConfigError
from ..registry import MODELS

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
RESERVED = ("ground truth",)


@dataclass(frozen=True)
class Entry:
    """One row of the leaderboard: ``model`` + ``checkpoint`` (dubbed here) or ``videos`` (a folder, scored as is)."""

    label: str
    model: str | None = None
    checkpoint: Path | None = None
    videos: Path | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def dubbed_here(self) -> bool:
        return self.model is not None

    def describe(self) -> str:
        return f"{self.model} {self.checkpoint}" if self.dubbed_here else f"videos in {self.videos}"


def _check_label(label: str, source: str) -> str:
    if not LABEL.match(label):
        raise ConfigError(f"{source}: entry name {label!r} must be letters, digits and _.+- (it names a folder)")
    return label


def _model_entry(label: str, model: str, target: str, source: str, options: dict | None = None) -> Entry:
    if model not in MODELS:
        raise ConfigError(f"{source}: {model!r} is not a registered model (see `talkingface list models`)")
    path = Path(target)
    if not path.exists():
        raise ConfigError(f"{source}: checkpoint {path} of entry {label!r} not found")
    return Entry(label, model=MODELS.canonical(model), checkpoint=path, options=dict(options or {}))


def _videos_entry(label: str, target: str, source: str) -> Entry:
    path = Path(target)
    if not path.is_dir():
        raise ConfigError(f"{source}: entry {label!r}: {path} is neither a registered model's checkpoint nor a folder "
                          "of videos")
    return Entry(label, videos=path)


def parse_entry(text: str) -> Entry:
    """An entry from ``LABEL=TARGET`` or ``LABEL=MODEL:TARGET`` (module docstring)."""
    label, sep, target = text.partition("=")
    if not sep or not label or not target:
        raise ConfigError(f"--entries {text!r}: expected NAME=CHECKPOINT, NAME=MODEL:CHECKPOINT or NAME=VIDEO_FOLDER")
    source = f"--entries {text}"
    _check_label(label, source)
    model, colon, rest = target.partition(":")
    if colon and model in MODELS:
        return _model_entry(label, model, rest, source)
    if label in MODELS and not _is_video_folder(Path(target)):
        return _model_entry(label, label, target, source)
    return _videos_entry(label, target, source)


def _is_video_folder(path: Path) -> bool:
    """A folder of mp4 files that is not a training run (a run folder holds ``config.yaml`` or checkpoints)."""
    if not path.is_dir() or (path / "config.yaml").is_file() or (path / "checkpoints").is_dir():
        return False
    return any(path.glob("*.mp4"))


def load_entries_file(path: str | Path) -> list[Entry]:
    """The entries of a YAML file (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"entries file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    items = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path}: expected a non-empty list under 'entries'")
    entries = []
    for index, item in enumerate(items, 1):
        source = f"{path}, entry {index}"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConfigError(f"{source}: each entry needs a 'name'")
        unknown = set(item) - {"name", "model", "checkpoint", "videos", "options"}
        if unknown:
            raise ConfigError(f"{source}: unknown keys {sorted(unknown)}")
        label = _check_label(item["name"], source)
        if item.get("videos") is not None:
            if item.get("model") or item.get("checkpoint"):
                raise ConfigError(f"{source}: give either 'videos' or 'model' + 'checkpoint'")
            entries.append(_videos_entry(label, str(item["videos"]), source))
        elif item.get("model") and item.get("checkpoint"):
            options = item.get("options") or {}
            if not isinstance(options, dict):
                raise ConfigError(f"{source}: 'options' must be a mapping of generate options")
            entries.append(_model_entry(label, str(item["model"]), str(item["checkpoint"]), source, options))
        else:
            raise ConfigError(f"{source}: give either 'videos' or 'model' + 'checkpoint'")
    return entries


def collect_entries(specs: Iterable[str] = (), files: Iterable[str | Path] = ()) -> list[Entry]:
    """Entries from ``--entries`` specs and entry files, in order; names must be unique."""
    entries = [parse_entry(spec) for spec in specs]
    for path in files:
        entries += load_entries_file(path)
    if not entries:
        raise ConfigError("no entries: give --entries NAME=TARGET ... or --entries-file FILE")
    seen: set[str] = set()
    for entry in entries:
        if entry.label in seen or entry.label.lower() in RESERVED:
            raise ConfigError(f"entry name {entry.label!r} is used twice or reserved")
        seen.add(entry.label)
    return entries
