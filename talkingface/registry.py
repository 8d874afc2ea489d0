"""Name -> class registries for models, datasets, metrics, audio features, face backends and preprocessing steps.

Lookup is case-insensitive and accepts aliases. The first lookup imports the built-in plugins and
every module advertised in the entry-point group ``talkingface.plugins``, so an installed package adds
models without editing this repository.
"""
from __future__ import annotations

import difflib
import importlib
import logging
import threading
from importlib import metadata
from typing import Any, Callable, Iterable, TypeVar

from .errors import RegistryError

ENTRY_POINT_GROUP = "talkingface.plugins"
BUILTIN_PLUGIN_MODULES = ("talkingface.models", "talkingface.data.layouts", "talkingface.data.face3d_step",
                          "talkingface.evaluation.metrics",
                          "talkingface.audio", "talkingface.face",
                          "talkingface.face.s3fd",  # registers nothing; declares sfd_face.pth (list --weights)
                          "talkingface.face3d",  # registers nothing; declares ReconNet's weights (list --weights)
                          "talkingface.restoration")  # registers nothing; declares GPEN's/GFPGAN's weights

logger = logging.getLogger(__name__)
T = TypeVar("T")

_discovery_lock = threading.RLock()  # a plugin may look names up while it is being imported
_discovered = False


def discover_plugins(force: bool = False) -> list[str]:
    """Import the built-in plugin modules and every ``talkingface.plugins`` entry point once.

    Returns the names of the entry points loaded. A plugin that fails to import is logged with its
    error and skipped, so one broken package does not disable the toolkit.
    """
    global _discovered
    with _discovery_lock:
        if _discovered and not force:
            return []
        _discovered = True
        for module in BUILTIN_PLUGIN_MODULES:
            importlib.import_module(module)
        loaded = []
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                entry_point.load()
            except Exception as exc:  # a third-party bug must not break the toolkit
                logger.warning("plugin %r (%s) failed to load: %s", entry_point.name, entry_point.value, exc)
                continue
            loaded.append(entry_point.name)
        return loaded


def import_plugin_modules(modules: Iterable[str]) -> None:
    """Import user modules named in config (``plugins: [pkg.mod]``) so their decorators run."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise RegistryError(f"cannot import plugin module {module!r}: {exc}") from exc


class Registry:
    """A case-insensitive mapping of names (and aliases) to registered objects."""

    def __init__(self, kind: str):
        self.kind = kind
        self._objects: dict[str, Any] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, aliases: Iterable[str] = (), *, override: bool = False) -> Callable[[T], T]:
        """Decorator registering a class or function under ``name`` and ``aliases``."""

        def decorator(obj: T) -> T:
            self.add(name, obj, aliases=aliases, override=override)
            return obj

        return decorator

    def add(self, name: str, obj: Any, aliases: Iterable[str] = (), *, override: bool = False) -> None:
        """Register ``obj``; re-registering the same object is a no-op, another one needs ``override``."""
        key = name.lower()
        keys = [key, *(alias.lower() for alias in aliases)]
        for k in keys:
            owner = self._aliases.get(k)
            if owner is not None and self._objects[owner] is not obj and not override:
                raise RegistryError(f"{self.kind} name {k!r} is already registered to {self._objects[owner]!r}")
        self._objects[key] = obj
        for k in keys:
            self._aliases[k] = key
        if isinstance(obj, type):
            obj.registered_name = key

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases."""
        discover_plugins()
        key = self._aliases.get(str(name).lower())
        if key is None:
            raise RegistryError(self._unknown_message(name))
        return key

    def get(self, name: str) -> Any:
        """The object registered as ``name``; an unknown name lists the closest known names."""
        return self._objects[self.canonical(name)]

    def names(self) -> list[str]:
        """Sorted canonical names."""
        discover_plugins()
        return sorted(self._objects)

    def __contains__(self, name: object) -> bool:
        discover_plugins()
        return isinstance(name, str) and name.lower() in self._aliases

    def _unknown_message(self, name: str) -> str:
        known = sorted(self._aliases)
        close = difflib.get_close_matches(str(name).lower(), known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(sorted(self._objects)) or "none"
        return f"unknown {self.kind} {name!r}{hint} (registered: {listing})"


MODELS = Registry("model")
DATASETS = Registry("dataset")
METRICS = Registry("metric")
AUDIO_FEATURES = Registry("audio feature")
FACE_BACKENDS = Registry("face backend")
PREPROCESS_STEPS = Registry("preprocessing step")

register_model = MODELS.register
register_dataset = DATASETS.register
register_metric = METRICS.register
register_audio_feature = AUDIO_FEATURES.register
register_face_backend = FACE_BACKENDS.register
register_preprocess_step = PREPROCESS_STEPS.register
