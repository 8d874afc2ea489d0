"""Base class of dataset layouts: turning a raw dataset into a processed clip store."""
from __future__ import annotations

import abc
import json
import logging
import shutil
from pathlib import Path
from typing import Any, ClassVar

from ..config import Config
from ..io_utils import atomic_write_json
from .steps import run_steps
from .store import ClipStore

logger = logging.getLogger(__name__)


class DatasetLayout(abc.ABC):
    """A registered dataset: knows where its raw data lives and how to preprocess it.

    Subclasses set ``default_config`` and implement ``build(store)``, which must be idempotent and
    resumable: it skips clips whose ``meta.json`` exists and writes each clip's ``meta.json`` last.
    ``fingerprint()`` names the settings that change the output; a store built with other settings is
    stale and rebuilt. The ``preprocess.steps`` then run on its clips (``steps.run_steps``; they keep their own
    per-clip fingerprints, so adding a step does not rebuild the clips).
    """

    default_config: ClassVar[dict] = {}
    registered_name: ClassVar[str] = ""
    store_version: ClassVar[int] = 1

    def __init__(self, config: Config):
        self.config = config

    @property
    def store_root(self) -> Path:
        return Path(self.config["data"]["processed_dir"]) / self.registered_name

    @property
    def raw_root(self) -> Path:
        return Path(self.config["data"]["root"]) / self.registered_name

    def fingerprint(self) -> dict[str, Any]:
        """Settings whose change invalidates a built store (JSON-serialisable)."""
        return {}

    def _expected_manifest(self) -> dict:
        return {"layout": self.registered_name, "store_version": self.store_version,
                "settings": json.loads(json.dumps(self.fingerprint(), default=str))}

    def is_prepared(self) -> bool:
        """Whether the store is complete and was built with the current settings."""
        store = ClipStore(self.store_root)
        manifest = store.manifest()
        return bool(manifest) and manifest.get("complete") is True and \
            {k: manifest.get(k) for k in ("layout", "store_version", "settings")} == self._expected_manifest()

    def prepare(self, force: bool = False) -> ClipStore:
        """Build the store if it is missing, stale or unfinished; return it."""
        store = ClipStore(self.store_root)
        if not force and self.is_prepared():
            logger.info("processed store %s is up to date", store.root)
        else:
            manifest = store.manifest()
            expected = self._expected_manifest()
            if force or (manifest and {k: manifest.get(k) for k in expected} != expected):
                logger.info("processed store %s is stale (settings changed); rebuilding", store.root)
                shutil.rmtree(store.root, ignore_errors=True)
            store.root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(store.manifest_path, {**expected, "complete": False})
            self.build(store)
            atomic_write_json(store.manifest_path, {**expected, "complete": True})
        run_steps(store, self.config)
        return store

    @abc.abstractmethod
    def build(self, store: ClipStore) -> None:
        """Write clips and split files into ``store`` (resumable and idempotent)."""
