"""Weight files the toolkit never ships or downloads: where they are expected and how they are checked.

Hashes are checked as far as the releases document them: the full SHA-256 where known, otherwise
its published prefix (pytorch-fid puts the first 8 hex digits in the file name) and suffix.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError

CHECKPOINT_DIR = Path("checkpoints")
TORCHVISION_LICENCE = "BSD-3-Clause (torchvision); its README: pre-trained weights may carry their dataset's terms"


@dataclass(frozen=True)
class KnownWeights:
    """A released weight file: its name, where it comes from, and what is known of its SHA-256.

    ``fills``: for a model's release, the submodules it loads (``networks.generator``, ...). ``licence``: the
    licence its source states for it (an SPDX id, any weights-specific restriction, where it is stated), or
    ``not stated``; every declaration must say one (users ask whether they may use a release commercially).
    Every declaration is listed by ``talkingface list --weights`` and in ``checkpoints/README.md``.
    """

    filename: str
    source: str
    used_by: str
    sha256_prefix: str = ""
    sha256_suffix: str = ""
    fills: tuple[str, ...] = ()
    licence: str = ""

    @property
    def published_hash(self) -> str:
        """What is known of the SHA-256: the full digest, ``prefix…suffix``, or ``unpublished``."""
        if len(self.sha256_prefix) == 64:
            return self.sha256_prefix
        if self.sha256_prefix or self.sha256_suffix:
            return f"{self.sha256_prefix}…{self.sha256_suffix}"
        return "unpublished"

    def default_path(self) -> Path:
        return CHECKPOINT_DIR / self.filename

    def missing_reason(self, path: str | Path | None = None) -> str | None:
        """Why the file cannot be used (absent), or None when it exists."""
        path = Path(path) if path else self.default_path()
        if not path.is_file():
            return f"{self.filename} not found at {path}; see checkpoints/README.md"
        return None

    def verify(self, path: str | Path) -> Path:
        """Check the file's SHA-256 against the known prefix/suffix; CheckpointError on a mismatch."""
        path = Path(path)
        digest = sha256_of(path)
        if not (digest.startswith(self.sha256_prefix) and digest.endswith(self.sha256_suffix)):
            known = f"{self.sha256_prefix}…{self.sha256_suffix}"
            raise CheckpointError(f"{path} is not the released {self.filename}: SHA-256 {digest} does not match "
                                  f"{known} (get it from {self.source})")
        return path


def weights_catalogue(package: str = "talkingface") -> list[KnownWeights]:
    """Every weight file declared at module level in the imported modules of ``package`` (directly, or inside a
    module-level dict or tuple such as a model's ``RELEASES``), by user then name. Import the plugins first
    (``registry.discover_plugins``)."""
    found: dict[str, KnownWeights] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not (name == package or name.startswith(package + ".")):
            continue
        for value in vars(module).values():
            items = value.values() if isinstance(value, dict) else value if isinstance(value, tuple) else (value,)
            for item in items:
                if isinstance(item, KnownWeights):
                    found.setdefault(item.filename, item)
    return sorted(found.values(), key=lambda w: (w.used_by, w.filename))


def weights_table(weights: list[KnownWeights]) -> str:
    """A Markdown table of ``weights`` (the generated part of ``checkpoints/README.md``)."""
    rows = ["| file | used by | fills | where it comes from | licence (as its source states it) | SHA-256 (as published) |",
            "|---|---|---|---|---|---|"]
    for w in weights:
        fills = ", ".join(f"`{f}`" for f in w.fills) or "—"
        rows.append(f"| `{w.filename}` | {w.used_by} | {fills} | {w.source} | {w.licence or 'MISSING'} | "
                    f"`{w.published_hash}` |")
    return "\n".join(rows)


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


SYNCNET_V2 = KnownWeights(
    "syncnet_v2.model", "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
    "LSE-C / LSE-D (metric lse)", sha256_prefix="961e8696", sha256_suffix="5442",
    licence="MIT (joonson/syncnet_python LICENSE.md; its README said CC-BY-NC-4.0 / CC-BY-4.0 for research use for "
            "the model from 2018 to 2020)")
FID_INCEPTION = KnownWeights(
    "pt_inception-2015-12-05-6726825d.pth",
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    "FID (metric fid)", sha256_prefix="6726825d",
    licence="Apache-2.0 (mseitzer/pytorch-fid; converted from TensorFlow's inception-2015-12-05)")
