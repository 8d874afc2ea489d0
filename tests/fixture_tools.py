"""Helpers for fixtures made from the original authors' code (the ``make_fixture.py`` scripts and their tests)."""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType


def load_module(path: Path, name: str) -> ModuleType:
    """Import the file ``path`` as module ``name`` (fixture folders are not packages)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git_commit(root: Path) -> str:
    """The checkout's HEAD commit, or ``unknown`` where ``root`` is not a git checkout."""
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fixture_arguments(description: str, repository: str, default_out: Path) -> argparse.Namespace:
    """The command line of a ``make_fixture.py``: the official code's folder, ``--out``, ``--commit`` (the
    commit is read with git when not given)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("official_repo", type=Path, help=f"files of {repository}")
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--commit", default="", help="the checkout's commit (read with git when empty)")
    args = parser.parse_args()
    args.commit = args.commit or git_commit(args.official_repo)
    return args


def state_layout(module) -> list[tuple[str, tuple[int, ...], str]]:
    """``[(key, shape, dtype), ...]`` of a module's state dict, in order (as the key listings write it)."""
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in module.state_dict().items()]
