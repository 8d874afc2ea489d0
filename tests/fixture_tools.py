"""Helpers for fixtures made from the original authors' code (the ``make_fixture.py`` scripts and their tests)."""
from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Callable, Sequence


def load_module(path: Path, name: str) -> ModuleType:
    """Import the file ``path`` as module ``name`` (fixture folders are not packages)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stub_module(name: str, path: Path | None = None, **attributes) -> ModuleType:
    """Register an empty module ``name`` in ``sys.modules`` holding ``attributes``; with ``path``, a package whose
    submodules are imported from that folder (its ``__init__.py`` does not run)."""
    module = ModuleType(name)
    if path is not None:
        module.__path__ = [str(path)]
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


def _git(directory: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, check=True).stdout


def git_revision(directory: Path, rev: str = "HEAD") -> str:
    """The commit (40 hex digits) ``rev`` names in the git repository at ``directory`` (bare or not), or ``""``
    where ``directory`` is not one or has no such revision."""
    try:
        return _git(directory, "rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def git_commit(root: Path) -> str:
    """The checkout's HEAD commit, or ``unknown`` where ``root`` is not a git checkout."""
    return git_revision(root) or "unknown"


def export_official_files(repo: Path, paths: Sequence[str], rev: str = "HEAD", prefix: str = "") -> tuple[Path, str]:
    """``(folder, commit)``: ``<prefix><path>`` of each of ``paths`` at ``rev`` of the git repository ``repo`` (a
    clone, bare or not), written with ``git show <commit>:<prefix><path>`` to ``<folder>/<path>`` in a new temporary
    folder. Single files, because ``git archive`` of these mirrors fails on the blobs they lack."""
    commit = git_revision(repo, rev)
    if not commit:
        raise SystemExit(f"{repo} has no commit {rev}")
    folder = Path(tempfile.mkdtemp(prefix="official-files-"))
    for path in paths:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(_git(repo, "show", f"{commit}:{prefix}{path}"))
    return folder, commit


def official_arguments(description: str, repository: str, default_out: Path, files: Sequence[str], prefix: str = "",
                       extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The command line of a script that runs the official code of ``repository`` from a few of its ``files``:
    ``official`` (a git clone, bare or not, or a folder of its files with ``--commit``), ``--rev`` (the revision to
    export from a clone), ``--commit``, ``--out`` (default ``default_out``), and what ``extra(parser)`` adds. The
    namespace gets ``files``, the folder to import from (the export of ``files``, or ``official/prefix``), and
    ``commit``, 40 hex digits; the script stops where a file is missing or the commit is not 40 hex digits."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    folder = f"holding its {prefix}{files[0].split('/')[0]}" if prefix else "of its files"
    parser.add_argument("official", type=Path, help=f"a git clone (bare or not) of {repository}, or a folder {folder}")
    parser.add_argument("--rev", default="HEAD", help="the revision to export from a git clone")
    parser.add_argument("--commit", default="", help="the commit of a folder of files (40 hex digits)")
    parser.add_argument("--out", type=Path, default=default_out)
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if git_revision(args.official, args.rev):
        args.files, args.commit = export_official_files(args.official, files, args.rev, prefix)
    else:
        args.files = args.official / prefix
    if not re.fullmatch(r"[0-9a-f]{40}", args.commit):
        raise SystemExit(f"{args.official} is not a git clone with a revision {args.rev}; for a folder of files, give "
                         "their commit as --commit <40 hex digits>")
    missing = [name for name in files if not (args.files / name).is_file()]
    if missing:
        raise SystemExit(f"{args.files} lacks {', '.join(missing)}")
    return args


def fixture_arguments(description: str, repository: str, default_out: Path) -> argparse.Namespace:
    """The command line of a ``make_fixture.py`` that imports from a whole checkout: the official code's folder
    (``official_repo``), ``--out``, ``--commit`` (the commit is read with git when not given)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("official_repo", type=Path, help=f"files of {repository}")
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--commit", default="", help="the checkout's commit (read with git when empty)")
    args = parser.parse_args()
    args.commit = args.commit or git_commit(args.official_repo)
    return args


def provenance(commit: str, **versions: str) -> dict:
    """What a fixture records of how it was made: ``official_commit``, ``torch_version``, ``<name>_version`` for each
    of ``versions`` (in order) and the ATen ``cpu_capability``, as NumPy arrays."""
    import numpy as np
    import torch

    return {"official_commit": np.array(commit), "torch_version": np.array(torch.__version__),
            **{f"{name}_version": np.array(version) for name, version in versions.items()},
            "cpu_capability": np.array(torch.backends.cpu.get_cpu_capability())}


def state_layout(module) -> list[tuple[str, tuple[int, ...], str]]:
    """``[(key, shape, dtype), ...]`` of a module's state dict, in order (as the key listings write it)."""
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in module.state_dict().items()]


def parse_key_listing(text: str) -> dict[str, list[tuple[str, tuple[int, ...], str]]]:
    """A key listing (``## heading`` lines, then ``key<TAB>shape<TAB>dtype`` rows; the fixtures' ``*_keys.txt``) as
    ``{heading line: [(key, shape, dtype), ...]}``."""
    sections: dict[str, list] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line, [])
        elif current is not None and "\t" in line:
            key, shape, dtype = line.split("\t")
            current.append((key, tuple(int(d) for d in re.findall(r"\d+", shape)), dtype))
    return sections
