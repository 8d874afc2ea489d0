"""Evaluate a model on a dataset split: dub every clip, score it, and optionally the shifted-audio control.

The control dubs each clip with its *own* audio circularly shifted by ``evaluate.control_audio_shift``
seconds and scores it against the same ground truth. A model that follows the audio loses its lip-sync
scores there (``mouth_sync`` near 0, LSE-C near its off-sync level); a model that copies the mouth from
the source frames keeps them. Shifting the clip's own audio keeps the voice, the loudness and the length,
so only the timing differs (docs/metrics.md, "Controls").
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..media import read_audio, write_wav
from .evaluator import EvaluationResult, Evaluator
from .strip import write_strip

logger = logging.getLogger(__name__)


@dataclass
class SplitEvaluation:
    """The scores of the dubbed split, of its shifted-audio control (``None`` when off) and the strips."""

    result: EvaluationResult
    control: EvaluationResult | None = None
    control_shift: float | None = None
    strips: tuple[Path, ...] = ()

    def table_rows(self, label: str) -> dict[str, dict[str, Any]]:
        """``{label: row}`` plus ``{label + " (audio shifted S s)": row}`` for the control, as
        ``results_table`` takes them."""
        rows = {label: summary_row(self.result)}
        if self.control is not None:
            rows[f"{label} (audio shifted {self.control_shift:g} s)"] = summary_row(self.control)
        return rows


def summary_row(result: EvaluationResult) -> dict[str, Any]:
    """One table row: the aggregate scores followed by the skipped metrics with their reasons."""
    return {**result.summary, **result.skipped}


def shift_audio(source: str | Path, target: str | Path, seconds: float, sample_rate: int) -> Path:
    """Write ``source``'s audio circularly shifted later by ``seconds`` (what ends the clip starts it) to
    ``target`` as WAV. The shift must be shorter than the audio."""
    samples = read_audio(source, sample_rate)
    shift = int(round(seconds * sample_rate))
    if not 0 < shift < len(samples):
        raise DataError(f"{source}: cannot shift {len(samples) / sample_rate:.2f} s of audio by {seconds} s "
                        "(evaluate.control_audio_shift must be positive and shorter than every clip)")
    return write_wav(target, np.roll(samples, shift), sample_rate)


def build_control_evaluator(config: Any) -> Evaluator | None:
    """The evaluator of the control row (``evaluate.control_metrics``, default ``evaluate.metrics``), or
    ``None`` when ``evaluate.control_audio_shift`` is off."""
    opts = config["evaluate"]
    if opts["control_audio_shift"] is None:
        return None
    names = opts["control_metrics"] if opts["control_metrics"] is not None else opts["metrics"]
    return Evaluator(names, config, progress=bool(config["progress"]))


def evaluation_clips(store: Any, config: Any) -> list[Any]:
    """The clips of ``evaluate.split`` (the first ``evaluate.max_videos`` when set); an empty split is an error."""
    opts = config["evaluate"]
    clips = store.split(opts["split"])
    if opts["max_videos"] is not None:
        clips = clips[: int(opts["max_videos"])]
    if not clips:
        raise DataError(f"{store.root}: split {opts['split']!r} is empty")
    return clips


def _dub_all(model: Any, clips: Sequence[Any], folder: Path, audio_of: Callable[[Any], Path]) -> list[tuple]:
    """``(name, generated, reference)`` pairs; videos already in ``folder`` are reused (resume)."""
    pairs = []
    for clip in clips:
        out = folder / f"{clip.name}.mp4"
        if not out.exists():
            with torch.no_grad():
                model.generate(clip.video_path, audio_of(clip), out)
        pairs.append((clip.name, out, clip.video_path))
    return pairs


def evaluate_split(model: Any, store: Any, config: Any, output_dir: Path, evaluator: Evaluator | None = None,
                   control_evaluator: Evaluator | None = None) -> SplitEvaluation:
    """Dub every clip of ``evaluate.split`` with its own audio into ``output_dir/generated`` and score it
    against the original; with ``evaluate.control_audio_shift`` also the shifted-audio control in
    ``output_dir/control``; with ``evaluate.strip_frames`` a PNG strip per clip in ``output_dir/strips``.

    Already generated videos and scored rows are reused, so an interrupted evaluation resumes. Pass
    evaluators to reuse their loaded networks across checkpoints.
    """
    opts = config["evaluate"]
    clips = evaluation_clips(store, config)
    strip_frames = int(opts["strip_frames"])
    if strip_frames < 0:
        raise ConfigError(f"evaluate.strip_frames must be 0 (no strips) or more, got {strip_frames}")
    shift = None if opts["control_audio_shift"] is None else float(opts["control_audio_shift"])
    if shift is not None and shift <= 0:
        raise ConfigError(f"evaluate.control_audio_shift must be a positive number of seconds, got {shift}")
    model.eval()
    pairs = _dub_all(model, clips, output_dir / "generated", lambda clip: clip.audio_path)
    evaluator = evaluator or Evaluator(opts["metrics"], config, progress=bool(config["progress"]))
    references: dict[Path, dict] = {}  # what the metrics measured on the ground truth, reused by the control
    result = evaluator.evaluate(pairs, resume_file=output_dir / "rows.jsonl", reference_caches=references)
    result.save(output_dir)
    evaluation = SplitEvaluation(result)
    control_pairs: dict[str, Path] = {}
    if shift is not None:
        folder = output_dir / "control"
        rate = int(config["preprocess"]["sample_rate"])

        def shifted(clip: Any) -> Path:
            target = folder / "audio" / f"{clip.name}.wav"
            return target if target.exists() else shift_audio(clip.audio_path, target, shift, rate)

        pairs_control = _dub_all(model, clips, folder / "generated", shifted)
        control_pairs = {name: generated for name, generated, _ in pairs_control}  # for the strips
        control_evaluator = control_evaluator or build_control_evaluator(config)
        evaluation.control = control_evaluator.evaluate(pairs_control, resume_file=folder / "rows.jsonl",
                                                        reference_caches=references)
        evaluation.control.save(folder)
        evaluation.control_shift = shift
    audio = {clip.name: clip.audio_path for clip in clips}
    extra = (lambda name, generated, reference: model.strip_rows(reference, audio[name], generated)
             if hasattr(model, "strip_rows") else [])
    evaluation.strips = tuple(_write_strips(pairs, control_pairs, shift, output_dir / "strips", strip_frames, extra))
    return evaluation


def _write_strips(pairs: list[tuple], control: dict[str, Path], shift: float | None, folder: Path,
                  frames: int, extra: Any = None) -> list[Path]:
    """One PNG per clip: the model's own rows (``extra(name, generated, reference)``, e.g. AudioDVP's renders),
    generated, control (when run) and ground truth rows (none when ``frames`` is 0)."""
    strips = []
    for name, generated, reference in pairs if frames else ():
        rows = [*(extra(name, generated, reference) if extra else []), ("generated", generated)]
        if name in control:
            rows.append((f"audio shifted {shift:g} s", control[name]))
        rows.append(("ground truth", reference))
        strips.append(write_strip(rows, folder / f"{name}.png", frames=frames))
    if strips:
        logger.info("frame strips (generated vs ground truth): %s", folder)
    return strips
