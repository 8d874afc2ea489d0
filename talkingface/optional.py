"""Optional modules: one place that imports them and says which extra to install when one is missing."""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import TalkingFaceError


class MissingDependencyError(TalkingFaceError, ImportError):
    """A feature needs a package that is not installed (the message names the install command)."""


def require(module: str, feature: str, extra: str | None = None, package: str | None = None) -> ModuleType:
    """Import ``module`` for ``feature``; when it is missing raise ``MissingDependencyError`` naming the feature
    and ``pip install 'talkingface[<extra>]'`` (or ``pip install <package>`` for a package outside the extras).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        install = f"pip install 'talkingface[{extra}]'" if extra else f"pip install {package or module}"
        raise MissingDependencyError(f"{feature} needs the Python package {package or module!r}, which is not "
                                     f"installed here: {install} ({exc})") from exc
