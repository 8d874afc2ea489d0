"""``talkingface leaderboard``: every entry dubs (or supplies) the same test clips with the same audio, one evaluator
scores every video with one protocol, beside the ground truth's own row (the metrics' ceiling) and the ground truth
played late against its audio and its reference (their chance level).

The output folder is the leaderboard's state: ``protocol.json`` (the card), ``entries/<name>/videos/<clip>.mp4`` (the
dubs; a video that exists is never dubbed again), ``rows/<name>.jsonl`` (each scored video, reused on a rerun),
``control/videos`` (the shifted ground truth) and the reports. A rerun into the same folder with the same card
adds or updates entries beside the earlier ones; another card is refused with the settings that differ.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..config import Config, load_config
from ..device import resolve_device
from ..errors import ConfigError, DataError
from ..evaluation.evaluator import EvaluationResult, Evaluator
from ..evaluation.split import evaluation_clips, summary_row
from ..io_utils import atomic_write_json
from ..media import VideoWriter, iter_frames, probe_video, read_audio
from ..weights import sha256_of
from .entries import Entry
from .protocol import check_same_protocol, protocol_card
from .speed import SpeedTable

logger = logging.getLogger(__name__)

GROUND_TRUTH = "ground truth"
CARD_FILE = "protocol.json"
BOARD_FILE = "leaderboard.json"


def control_label(shift: float) -> str:
    return f"{GROUND_TRUTH} {shift:g} s late"


@dataclass
class Row:
    """One row of the board: its kind (``ground truth``, ``control``, ``model`` or ``videos``), what made it, the
    aggregate scores, the per-clip scores and the clips' videos."""

    label: str
    kind: str
    source: str
    summary: dict[str, Any]
    clips: list[dict[str, Any]]
    videos: dict[str, str]
    checkpoint_sha256: str | None = None
    speed: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Board:
    """The scored board: rows in display order, the card, and the clips."""

    dataset: str
    card: dict[str, Any]
    rows: list[Row]
    clips: list[str]
    references: dict[str, str]
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    speed_note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "card": self.card, "clips": self.clips, "references": self.references,
                "higher_is_better": self.higher_is_better, "speed_note": self.speed_note,
                "rows": [row.as_dict() for row in self.rows]}


def _config(dataset: str, metrics: Sequence[str] | None, config_files: Iterable[str | Path],
            cli_overrides: Mapping | None) -> Config:
    overrides = dict(cli_overrides or {})
    if metrics:
        overrides["evaluate"] = {**dict(overrides.get("evaluate") or {}), "metrics": list(metrics)}
    return load_config(None, dataset, config_files, None, overrides)


def _score(evaluator: Evaluator, pairs: list[tuple], resume: Path, references: dict) -> EvaluationResult:
    return evaluator.evaluate(pairs, resume_file=resume, reference_caches=references)


def _control_videos(clips: Sequence[Any], folder: Path, shift: float, sample_rate: int) -> dict[str, Path]:
    """Each clip's ground-truth frames circularly shifted ``shift`` seconds late (its last frames first) under its own
    audio: a real talking face, at the wrong time against both the audio and the reference frames."""
    out = {}
    for clip in clips:
        target = folder / f"{clip.name}.mp4"
        if not target.is_file():
            shifted_frames(clip.video_path, read_audio(clip.audio_path, sample_rate), sample_rate, shift, target)
        out[clip.name] = target
    return out


def shifted_frames(video: Path, audio: np.ndarray, sample_rate: int, shift: float, target: Path) -> Path:
    """Write ``video``'s frames rolled ``shift`` seconds later (streamed: only the moved tail is held) with ``audio``
    to ``target``, atomically. The shift must be shorter than the video."""
    info = probe_video(video)
    steps = int(round(shift * info.fps))
    if not 0 < steps < info.frame_count:
        raise DataError(f"{video}: cannot shift {info.frame_count / info.fps:.2f} s of video by {shift} s "
                        "(--control-shift must be positive and shorter than every clip)")
    tail = [frame for index, frame in enumerate(iter_frames(video)) if index >= info.frame_count - steps]
    with VideoWriter(target, info.fps, audio=audio, sample_rate=sample_rate) as writer:
        for frame in tail:
            writer.write(frame)
        for _, frame in zip(range(info.frame_count - steps), iter_frames(video)):
            writer.write(frame)
    return target


class EntryDubber:
    """Dubs the clips an entry still lacks; the model is built only when a clip is missing (a resumed board whose
    dubs all exist loads nothing)."""

    def __init__(self, entry: Entry, device: str, progress: bool):
        self.entry, self.device, self.progress = entry, device, progress
        self._model: Any = None

    def model(self) -> Any:
        if self._model is None:
            from ..pipeline import build_model, trained_config

            weights, config = trained_config(self.entry.model, self.entry.checkpoint,
                                             cli_overrides={"device": self.device, "progress": self.progress})
            self._model = build_model(self.entry.model, config).load_checkpoint(weights)
            self._model = self._model.to(resolve_device(config["device"])).eval()
        return self._model

    def videos(self, clips: Sequence[Any], folder: Path) -> dict[str, Path]:
        out = {}
        for clip in clips:
            target = folder / f"{clip.name}.mp4"
            if not target.is_file():
                logger.info("%s: dubbing %s", self.entry.label, clip.name)
                with torch.no_grad():
                    self.model().generate(clip.video_path, clip.audio_path, target, **self.entry.options)
            out[clip.name] = target
        return out


def supplied_videos(entry: Entry, clips: Sequence[Any]) -> dict[str, Path]:
    """The entry's ``<clip>.mp4`` for every clip; a missing one is an error naming them all."""
    found = {clip.name: entry.videos / f"{clip.name}.mp4" for clip in clips}
    missing = [name for name, path in found.items() if not path.is_file()]
    if missing:
        raise DataError(f"entry {entry.label!r}: {entry.videos} lacks {len(missing)} of the {len(clips)} clips' "
                        f"videos: {', '.join(m + '.mp4' for m in missing[:10])}"
                        f"{' ...' if len(missing) > 10 else ''}")
    return found


def _row(label: str, kind: str, source: str, result: EvaluationResult, videos: Mapping[str, Path],
         **extra: Any) -> Row:
    return Row(label, kind, source, summary_row(result), list(result.rows),
               {name: str(path) for name, path in videos.items()}, **extra)


def _earlier_rows(out: Path, card: dict) -> list[dict]:
    """The rows of a board saved in ``out`` under the same card (refused under another)."""
    saved_card = out / CARD_FILE
    if saved_card.is_file():
        check_same_protocol(json.loads(saved_card.read_text(encoding="utf-8")), card, out)
    board = out / BOARD_FILE
    if not board.is_file():
        return []
    return list(json.loads(board.read_text(encoding="utf-8")).get("rows", []))


def leaderboard(dataset: str, entries: Sequence[Entry], out: str | Path, metrics: Sequence[str] | None = None,
                control_shift: float | None = 1.5, speed_files: Iterable[str | Path] = (),
                config_files: Iterable[str | Path] = (), cli_overrides: Mapping | None = None) -> Board:
    """Score ``entries`` on ``dataset``'s ``evaluate.split`` into ``out`` (module docstring); returns the board,
    written as JSON, Markdown, CSV, text and a static HTML page with the clips side by side."""
    from ..log import setup_logging
    from ..pipeline import preprocess
    from .report import write_reports

    config = _config(dataset, metrics, config_files, cli_overrides)
    setup_logging(config["log_level"])
    if control_shift is not None and control_shift <= 0:
        raise ConfigError(f"--control-shift must be positive seconds (or 0 for no control row), got {control_shift}")
    out = Path(out)
    speed = SpeedTable.load(speed_files)
    store = preprocess(dataset, config)
    clips = evaluation_clips(store, config)
    progress = bool(config["progress"])
    evaluator = Evaluator(config["evaluate"]["metrics"], config, progress=progress)
    card = protocol_card(dataset, config, clips, evaluator, control_shift)
    earlier = _earlier_rows(out, card)
    atomic_write_json(out / CARD_FILE, card)
    for entry in entries:  # a missing video fails before anything is dubbed
        if not entry.dubbed_here:
            supplied_videos(entry, clips)
    references: dict[Path, dict] = {}
    truth = {clip.name: clip.video_path for clip in clips}

    def pairs(videos: Mapping[str, Path]) -> list[tuple]:
        return [(name, videos[name], truth[name]) for name in truth]

    rows = [_row(GROUND_TRUTH, "ground truth", f"{dataset} {config['evaluate']['split']} split",
                 _score(evaluator, pairs(truth), out / "rows" / "ground-truth.jsonl", references), truth)]
    if control_shift is not None:
        videos = _control_videos(clips, out / "control" / "videos", control_shift,
                                 int(config["preprocess"]["sample_rate"]))
        rows.append(_row(control_label(control_shift), "control",
                         f"the ground truth's frames circularly shifted {control_shift:g} s against its audio",
                         _score(evaluator, pairs(videos), out / "rows" / "control.jsonl", references), videos))
    for entry in entries:
        if entry.dubbed_here:
            digest = sha256_of(_weights_file(entry))
            videos = EntryDubber(entry, config["device"], progress).videos(clips, out / "entries" / entry.label / "videos")
            result = _score(evaluator, pairs(videos), out / "rows" / f"{entry.label}.jsonl", references)
            rows.append(_row(entry.label, "model", entry.describe(), result, videos, checkpoint_sha256=digest,
                             speed=speed.lookup(entry.model, digest)))
        else:
            videos = supplied_videos(entry, clips)
            result = _score(evaluator, pairs(videos), out / "rows" / f"{entry.label}.jsonl", references)
            rows.append(_row(entry.label, "videos", entry.describe(), result, videos))
    rows += _kept(earlier, {row.label for row in rows})
    higher = {key: better for metric in evaluator.metrics.values() for key, better in metric.higher_is_better.items()}
    board = Board(dataset, card, rows, list(truth), {k: str(v) for k, v in truth.items()}, higher, speed.note())
    write_reports(board, out, int(config["evaluate"]["strip_frames"]))
    return board


def _weights_file(entry: Entry) -> Path:
    from ..pipeline import resolve_checkpoint

    return resolve_checkpoint(entry.checkpoint)[0]


def _kept(earlier: list[dict], replaced: set[str]) -> list[Row]:
    """Entries of an earlier run into the same folder that this run did not name (same card: still comparable)."""
    return [Row(**row) for row in earlier if row["kind"] in ("model", "videos") and row["label"] not in replaced]
