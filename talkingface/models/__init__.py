"""Model plugins. Importing this package registers the built-in models.

A plugin folder is a sub-package ``talkingface.models.<name>`` with a config file
``configs/model/<name>.yaml``; every such folder is imported here (its ``__init__`` imports the module
that registers the model), so adding a model edits nothing else (docs/architecture.md). Sub-packages
without a config of their own (``common``: shared training pieces) are imported only by the models
that use them.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..config import config_root
from .base import TalkingFaceModel


def model_packages() -> list[str]:
    """Names of the sub-packages that are model plugin folders (those with ``configs/model/<name>.yaml``)."""
    folder = config_root() / "model"
    return sorted(info.name for info in pkgutil.iter_modules(__path__)
                  if info.ispkg and (folder / f"{info.name}.yaml").is_file())


for _name in model_packages():
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["TalkingFaceModel", "model_packages"]
