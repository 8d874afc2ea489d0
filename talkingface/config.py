"""Layered YAML configuration.

Layers, later wins: ``configs/overall.yaml`` -> model defaults -> dataset defaults ->
``configs/model/<model>/<dataset>.yaml`` -> user files -> Python dict -> CLI ``--key=value``.
The first four layers define which keys exist; a key that none of them defines is an error with a
suggestion, never a silent ``None``. CLI values are parsed with ``yaml.safe_load`` (never ``eval``).
"""
from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from .errors import ConfigError

_MISSING = object()


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` and ``5E3`` as floats (YAML 1.1 reads them as strings)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_value(text: str):
    """Parse one YAML document safely with ``YamlLoader``."""
    return yaml.load(text, Loader=YamlLoader)


def config_root() -> Path:
    """Folder of the built-in YAML files (``talkingface/configs``, linked as ``configs/`` at the top)."""
    return Path(str(resources.files("talkingface.configs")))


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing file, a syntax error or a non-mapping is a ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml_value(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must contain a mapping, got {type(data).__name__}")
    return data


def parse_cli_overrides(tokens: Iterable[str]) -> dict:
    """Turn ``--key=value`` / ``--key value`` tokens into a nested dict; values are YAML-typed."""
    tokens = list(tokens)
    result: dict = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"unexpected argument {token!r}; options are written --key=value")
        body = token[2:]
        if "=" in body:
            key, raw = body.split("=", 1)
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            key, raw = body, tokens[i + 1]
            i += 1
        else:
            key, raw = body, "true"  # a bare flag means true
        i += 1
        try:
            value = yaml_value(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        set_dotted(result, key.replace("-", "_"), value)
    return result


def set_dotted(target: dict, dotted_key: str, value: Any) -> None:
    """``set_dotted(d, "a.b", 1)`` sets ``d["a"]["b"] = 1``, creating inner dicts."""
    parts = dotted_key.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"config key {dotted_key!r}: {part!r} is not a mapping")
    target[parts[-1]] = value


def _type_compatible(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def open_paths(defaults: Mapping, prefix: str = "") -> set[str]:
    """Dotted paths whose default is an empty mapping: free-form sections that accept any key."""
    paths = set()
    for key, value in defaults.items():
        if isinstance(value, Mapping):
            path = f"{prefix}{key}"
            paths |= {path} if not value else open_paths(value, path + ".")
    return paths


def merge_layer(
    base: dict, layer: Mapping, source: str, *, define: bool, free: frozenset[str] = frozenset(), prefix: str = ""
) -> None:
    """Merge ``layer`` into ``base`` in place.

    With ``define`` the layer may add keys (a defaults layer); otherwise every key must exist in
    ``base`` (or lie under a path in ``free``) and keep a compatible type.
    """
    for key, value in layer.items():
        key = str(key)
        path = f"{prefix}{key}"
        current = base.get(key, _MISSING)
        may_define = define or prefix.rstrip(".") in free
        if current is _MISSING:
            if not may_define:
                close = difflib.get_close_matches(key, list(base), n=3, cutoff=0.6)
                hint = f"; did you mean {' or '.join(prefix + c for c in close)}?" if close else ""
                raise ConfigError(f"unknown config key {path!r} in {source}{hint}")
            base[key] = copy.deepcopy(value)
            continue
        if isinstance(current, dict) and isinstance(value, Mapping):
            merge_layer(current, value, source, define=may_define, free=free, prefix=path + ".")
            continue
        if not may_define and not _type_compatible(current, value):
            raise ConfigError(
                f"config key {path!r} in {source} expects {type(current).__name__} "
                f"(default {current!r}), got {type(value).__name__} {value!r}"
            )
        base[key] = copy.deepcopy(value)


class Config(Mapping):
    """A resolved configuration: a nested mapping with item, dotted and attribute access.

    A missing key raises ``ConfigError`` with a suggestion instead of returning ``None``.
    """

    def __init__(self, data: Mapping | None = None, free_sections: Iterable[str] = ()):
        object.__setattr__(self, "_data", copy.deepcopy(dict(data or {})))
        object.__setattr__(self, "_free", frozenset(free_sections))

    def __getitem__(self, key: str) -> Any:
        node: Any = self._data
        for part in str(key).split("."):
            if not isinstance(node, Mapping) or part not in node:
                known = list(node) if isinstance(node, Mapping) else []
                close = difflib.get_close_matches(part, known, n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(f"config has no key {key!r}{hint}")
            node = node[part]
        if isinstance(node, dict):  # a read-only view of a section, so cfg.train.epochs works
            view = Config.__new__(Config)
            object.__setattr__(view, "_data", node)
            object.__setattr__(view, "_free", frozenset())
            return view
        return node

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        return self[key]

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Config is read-only; use Config.updated(...)")

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def free_sections(self) -> frozenset[str]:
        """Dotted paths of free-form sections (any key allowed below them)."""
        return self._free

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except ConfigError:
            return default

    def to_dict(self) -> dict:
        """A deep copy as plain dicts and lists."""
        return copy.deepcopy(self._data)

    def updated(self, values: Mapping, source: str = "update") -> "Config":
        """A new Config with ``values`` merged in under the unknown-key rules."""
        data = self.to_dict()
        merge_layer(data, values, source, define=False, free=self._free)
        return Config(data, self._free)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self._data, sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> Path:
        """Write the resolved config as YAML, atomically."""
        from .io_utils import atomic_write_text

        return atomic_write_text(Path(path), self.to_yaml())

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


def defaults_of(component: Any) -> dict:
    """A plugin class's own defaults: its ``default_config`` mapping (may be empty)."""
    return copy.deepcopy(dict(getattr(component, "default_config", None) or {}))


def load_config(
    model: str | None = None,
    dataset: str | None = None,
    config_files: Iterable[str | Path] = (),
    config: Mapping | None = None,
    cli_overrides: Mapping | None = None,
) -> Config:
    """Resolve the layered configuration for a model/dataset pair (either may be ``None``)."""
    from .registry import AUDIO_FEATURES, DATASETS, FACE_BACKENDS, MODELS, import_plugin_modules

    user_layers: list[tuple[str, dict]] = [(str(p), read_yaml(p)) for p in config_files]
    user_layers.append(("config dict", dict(config or {})))
    user_layers.append(("command line", dict(cli_overrides or {})))
    for _, layer in user_layers:  # plugins must be imported before names are resolved
        import_plugin_modules(layer.get("plugins", []) or [])

    root = config_root()
    data = read_yaml(root / "overall.yaml")
    sources = [str(root / "overall.yaml")]
    for registry in (FACE_BACKENDS, AUDIO_FEATURES):  # their option sections exist whichever is chosen
        for name in registry.names():
            merge_layer(data, defaults_of(registry.get(name)), f"{registry.kind} {name} defaults", define=True)

    def add_defaults(kind: str, registry: Any, name: str | None) -> str | None:
        if name is None:
            return None
        canonical = registry.canonical(name)
        merge_layer(data, defaults_of(registry.get(canonical)), f"{kind} {canonical} defaults", define=True)
        path = root / kind / f"{canonical}.yaml"
        if path.is_file():
            merge_layer(data, read_yaml(path), str(path), define=True)
            sources.append(str(path))
        return canonical

    model_name = add_defaults("model", MODELS, model)
    dataset_name = add_defaults("dataset", DATASETS, dataset)
    if model_name and dataset_name:
        pair = root / "model" / model_name / f"{dataset_name}.yaml"
        if pair.is_file():
            merge_layer(data, read_yaml(pair), str(pair), define=True)
            sources.append(str(pair))
    free = frozenset(open_paths(data))
    for source, layer in user_layers:
        merge_layer(data, layer, source, define=False, free=free)
        if layer:
            sources.append(source)
    data["model"] = model_name
    data["dataset"] = dataset_name
    data["config_sources"] = sources
    return Config(data, free)
