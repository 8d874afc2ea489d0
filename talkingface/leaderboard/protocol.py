"""The protocol card: everything that changes a leaderboard's numbers, so that two tables can be compared or refused.

The card holds the dataset, split and the SHA-256 of its clip list (names, video and audio bytes), the store's frame
rate and sizes, the metrics that ran (and those skipped) with every ``evaluate`` setting (LSE protocol and region, crop, frames used, FID
features) and the SHA-256 of each metric's weight files, the face backend and its options, the control's audio
shift, and the toolkit's version. An entry's own checkpoint is not part of the card (it belongs to its row).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..config import Config
from ..errors import ConfigError
from ..evaluation.evaluator import Evaluator
from ..weights import sha256_of

CARD_VERSION = 1
# the preprocessing options that decide the store's frames and the face tracks the metrics read
# evaluate options that do not change a number (where weight files lie: their SHA-256 is on the card instead)
NOT_PROTOCOL = ("enabled", "split", "metrics", "strip_frames", "control_audio_shift", "control_metrics")
PREPROCESS_KEYS = ("fps", "sample_rate", "face_backend", "detect_every", "max_gap", "smoothing_window")


def clip_list_digest(clips: Sequence[Any]) -> str:
    """SHA-256 over each clip's name and the SHA-256 of its video and audio files, in order."""
    digest = hashlib.sha256()
    for clip in clips:
        digest.update(clip.name.encode() + b"\0")
        for path in (clip.video_path, clip.audio_path):
            digest.update(sha256_of(path).encode() if Path(path).is_file() else b"absent")
    return digest.hexdigest()


def weight_digests(evaluator: Evaluator) -> dict[str, str]:
    """``{metric.role: sha256 or 'absent'}`` for the weight files of every metric that runs."""
    out = {}
    for name, metric in sorted(evaluator.metrics.items()):
        for role, path in sorted(metric.weight_files().items()):
            path = Path(path)
            out[f"{name}.{role}"] = sha256_of(path) if path.is_file() else "absent"
    return out


def protocol_card(dataset: str, config: Config, clips: Sequence[Any], evaluator: Evaluator,
                  control_shift: float | None) -> dict[str, Any]:
    """The card of a leaderboard over ``clips`` of ``dataset`` scored by ``evaluator`` (module docstring)."""
    from .. import __version__

    plain = config.to_dict()
    backend = plain["preprocess"]["face_backend"]
    sizes = sorted({"{1}x{0}".format(*clip.frame_size()) for clip in clips})
    return {
        "card_version": CARD_VERSION,
        "toolkit": f"talkingface {__version__}",
        "dataset": dataset,
        "split": plain["evaluate"]["split"],
        "clips": [clip.name for clip in clips],
        "clip_list_sha256": clip_list_digest(clips),
        "frame_sizes": sizes,
        "preprocess": {key: plain["preprocess"].get(key) for key in PREPROCESS_KEYS},
        "face_backend_options": plain.get(backend) if isinstance(plain.get(backend), Mapping) else None,
        "metrics": sorted(evaluator.metrics),
        "metrics_skipped": sorted(evaluator.skipped),
        "evaluate": {key: value for key, value in sorted(plain["evaluate"].items())
                     if key not in NOT_PROTOCOL and not key.endswith("_weights")},
        "weights_sha256": weight_digests(evaluator),
        "control_audio_shift": control_shift,
    }


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(tree, sort_keys=True, default=str)}


def card_differences(old: Mapping, new: Mapping) -> list[str]:
    """``setting: old -> new`` for every setting in which two cards differ (empty when they match)."""
    a, b = _flat(old), _flat(new)
    return [f"{key}: {a.get(key, '(absent)')} -> {b.get(key, '(absent)')}"
            for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def check_same_protocol(old: Mapping, new: Mapping, where: str | Path) -> None:
    """Refuse to put rows scored under ``new`` beside those of ``old`` (saved in ``where``) when the cards differ."""
    differences = card_differences(old, new)
    if differences:
        listing = "; ".join(differences[:8]) + (f"; and {len(differences) - 8} more" if len(differences) > 8 else "")
        raise ConfigError(f"{where} holds a leaderboard with another protocol card, rows cannot be merged: {listing} "
                          "(use another --out folder, or the same settings)")


def card_lines(card: Mapping) -> Iterable[str]:
    """The card as ``key: value`` lines (nested keys dotted) for the terminal and the Markdown report."""
    for key, value in _flat(card).items():
        yield f"{key}: {value}"
