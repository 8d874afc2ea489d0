"""The model-agnostic dubbing loop: a source video and a driving audio in, an mp4 out (docs/architecture.md).

Memory does not grow with the video: a first decode tracks landmarks (keeping only ``(T, 68, 2)``), the
model's ``prepare`` fetches what it needs (e.g. reference frames), and the last decode streams frames in
output order (ping-pong included) in batches through the model's generator, pasting back and encoding as it
goes. With ``overlap_io`` (default on CUDA) decoding and cropping run ahead of the generator, pasting and
encoding behind it, each in a background thread. Frames without a usable face pass through unchanged, the
source frame rate is kept unless ``fps`` is given, and the output appears only when it is complete.

A model supplies a ``DubbingHooks`` object: its settings, its crop (geometry and references), its
generator call on a batch and its paste-back. Everything else is here.
"""
from __future__ import annotations

import abc
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..audio import feature_time_axis, frame_vectors
from ..background import BackgroundSink, prefetch
from ..device import autocast_for, resolve_dtype
from ..errors import AudioError, ConfigError
from ..log import progress_bar
from ..media import VideoInfo, VideoWriter, probe_video, read_audio
from ..profiling import StagedContext, counting_flops, declare_stages, stage, staged
from ..registry import AUDIO_FEATURES
from .faces import track_landmarks
from .frames import fetch_frames, frames_in_order
from .options import GenerateOption, check_options
from .plan import AUDIO_FPS, PAD, InferencePlan, plan_inference

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# the stages every dub goes through (talkingface.profiling); a model's hooks declare their own (``stages``)
LOOP_STAGES = ("decode", "face tracking", "audio feature", "prepare", "crop", "generator", "paste", "encode")


@dataclass(frozen=True)
class DubbingSettings:
    """What the loop takes from a model's config."""

    label: str  # names progress bars and threads
    audio_feature: str  # a registered audio feature ("": none, the model reads the waveform in ``prepare_audio``)
    audio_reduction: str  # talkingface.audio.vectors rule
    audio_channels: int  # the generator's audio width (checked)
    batch: int | None  # frames per generator call (None: 8 on CUDA, 1 on CPU)
    seed: int
    face: Any  # "largest" or an index
    face_backend: str | None  # None: preprocess.face_backend
    max_gap: int  # frames without a face filled from neighbours
    channels_last: bool
    amp: bool  # fp16 autocast on CUDA unless the dub's ``dtype`` says otherwise
    overlap_io: bool | None  # None: on for CUDA only
    reverse_block_frames: int  # frames held while playing the video backwards
    audio_radius: int = PAD  # the generator's audio window: its frame's feature +- this many
    audio_pad: str = "edge"  # windows past the audio's ends: edge (clamped) | zero (zero vectors)


@dataclass(frozen=True)
class SourceTrack:
    """The source video as the hooks see it: where it is, its rate and size, its face track and the plan."""

    path: Path
    fps: float
    frame_size: tuple[int, int]  # (height, width)
    landmarks: np.ndarray  # (n, 68, 2), NaN where no face
    valid: np.ndarray  # (n,)
    plan: InferencePlan

    def fetch(self, wanted: set[int]) -> dict[int, np.ndarray]:
        """Source frames by index (one decode)."""
        with stage("decode"):
            return fetch_frames(self.path, self.fps, wanted)


class DubbingHooks(abc.ABC):
    """What one dub needs from a model; made per ``generate`` call with its options resolved.

    ``crops_depend_on_plan``: the crop of an output frame depends on more than its source frame and landmark
    window (e.g. on its neighbours in the output), so a template's crops are not kept across dubs."""

    crops_depend_on_plan = False
    # the model's own stages (``with talkingface.profiling.stage(name)`` in its hooks), nested in the loop's
    stages: tuple[str, ...] = ()

    def __init__(self, config: Any, settings: DubbingSettings, generator: torch.nn.Module, device: torch.device):
        self.config, self.settings, self.generator, self.device = config, settings, generator, device
        self.prepared = False  # True once ``prepare`` ran for a template (``prepare_template``)

    def prepare(self, source: SourceTrack, rng: np.random.Generator) -> None:
        """Before the frames stream: e.g. choose and crop the reference frames (seeded by ``rng``)."""

    def prepare_audio(self, wav: np.ndarray, vectors: np.ndarray, plan: InferencePlan) -> None:
        """After ``prepare`` (which a served template runs once), once per dub: the whole driving waveform (16 kHz float) and its (T, C) 25 fps feature
        vectors, for models whose audio network runs over the sequence (e.g. an autoregressive decoder) rather than
        per frame window."""

    @abc.abstractmethod
    def crop(self, frame: np.ndarray, source: SourceTrack, index: int) -> tuple[torch.Tensor, Any] | None:
        """Output frame ``index``: ``((3, H, W) float face in [0, 1], paste info)``, or None to pass it through."""

    @abc.abstractmethod
    def generate(self, generator: torch.nn.Module, faces: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` faces in [0, 1] on the device (and memory format) and ``(B, C, W)`` audio windows ->
        the generated ``(B, 3, H, W)`` faces (clamped to [0, 1] afterwards)."""

    @abc.abstractmethod
    def paste(self, frame: np.ndarray, face: np.ndarray, info: Any) -> np.ndarray:
        """The frame with the generated ``(H, W, 3)`` float face pasted back (a copy)."""


def audio_vectors(settings: DubbingSettings, config: Any, wav: np.ndarray, source: Path) -> np.ndarray:
    """``(T, C)`` 25 fps feature vectors of the whole driving audio (T = its length in 25 fps frames)."""
    count = int(round(len(wav) * AUDIO_FPS / SAMPLE_RATE))
    if count < 1:
        raise AudioError(f"{source}: the driving audio is shorter than one 25 fps frame ({len(wav)} samples)")
    name = settings.audio_feature
    if not name:  # a model whose audio network reads the waveform (``prepare_audio``): no per-frame vectors
        return np.zeros((count, 0), np.float32)
    raw = AUDIO_FEATURES.get(name)(config).extract(wav, count, AUDIO_FPS)
    vectors = frame_vectors(raw, feature_time_axis(name, raw.shape[1:], settings.audio_reduction))
    if vectors.shape[1] != settings.audio_channels:
        raise ConfigError(f"feature {name!r} gives {vectors.shape[1]} values per frame, the model takes "
                          f"{settings.audio_channels}")
    return vectors


@contextlib.contextmanager
def inference_mode(generator: torch.nn.Module, channels_last: bool) -> Iterator[torch.nn.Module]:
    """The generator in eval mode (and, with ``channels_last``, in that memory format, which oneDNN and cuDNN
    run faster: +10–20 % for DINet at mouths 128/256 on 2 CPU cores); both are undone on exit."""
    was_training = generator.training
    generator.eval()
    if channels_last:
        generator.to(memory_format=torch.channels_last)
    try:
        yield generator
    finally:
        if channels_last:
            generator.to(memory_format=torch.contiguous_format)
        generator.train(was_training)


class _Pending:
    """Output frames waiting for the generator (those with a face) or passing through, in order."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.infos: list[Any] = []
        self.faces: list[torch.Tensor] = []
        self.audio: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class PreparedSource:
    """A source video tracked once: reused by every dub of it (``talkingface serve`` keeps one per template)."""

    path: Path
    fps: float
    frame_size: tuple[int, int]
    landmarks: np.ndarray
    valid: np.ndarray
    crop_cache: dict | None = None  # (source frame, landmark window) -> the hooks' crop, when kept

    def track(self, plan: InferencePlan) -> SourceTrack:
        """What the hooks see of this source under ``plan``."""
        return SourceTrack(self.path, self.fps, self.frame_size, self.landmarks, self.valid, plan)


def prepare_source(hooks: DubbingHooks, source_video: str | Path, fps: float | None = None, face: Any = None,
                   progress: bool = False, info: VideoInfo | None = None) -> PreparedSource:
    """Probe (unless ``info`` is given) and track ``source_video`` at ``fps`` (default: its own rate) with the
    face choice ``face``."""
    settings = hooks.settings
    source = Path(source_video)
    info = info or probe_video(source)
    fps = float(fps or info.fps)
    with stage("face tracking"):
        landmarks, valid = track_landmarks(source, fps, settings.face if face is None else face, hooks.config,
                                           settings.face_backend, settings.max_gap, progress, settings.label)
    return PreparedSource(source, fps, (info.height, info.width), landmarks, valid)


def prepare_template(hooks: DubbingHooks, source_video: str | Path, seed: int | None = None,
                     **options: Any) -> PreparedSource:
    """A template for many dubs: tracked once, the hooks' references chosen once (over the template's own
    length), and crops kept as they are first made."""
    prepared = prepare_source(hooks, source_video, options.get("fps"), options.get("face"),
                              bool(options.get("progress", False)))
    count = len(prepared.landmarks)
    settings = hooks.settings
    track = prepared.track(plan_inference(count, max(int(round(count * AUDIO_FPS / prepared.fps)), 1), prepared.fps,
                                          settings.audio_radius, settings.audio_pad))
    with stage("prepare"):
        hooks.prepare(track, np.random.default_rng(int(hooks.settings.seed if seed is None else seed)))
    hooks.prepared = True
    prepared.crop_cache = {}
    return prepared


def dub(hooks: DubbingHooks, source_video: str | Path, audio: str | Path, output: str | Path,
        declared: tuple[GenerateOption, ...] = (), prepared: PreparedSource | None = None, **options: Any) -> Path:
    """Write ``output``: ``source_video`` dubbed with ``audio`` by the model behind ``hooks``.

    ``options``: the loop's (``fps``, ``face``, ``batch``, ``dtype``; ``seed`` of the reference choice, ``progress``) and
    those the model ``declared``; None means the default. ``prepared`` (from ``prepare_template``) skips the
    tracking and the reference choice.
    """
    settings, device = hooks.settings, hooks.device
    check_options(options, declared, settings.label)
    declare_stages((*LOOP_STAGES, *hooks.stages))
    dtype = resolve_dtype(device, options.get("dtype") or hooks.config.get("infer_dtype"), settings.amp)
    output = Path(output)
    batch_size = max(int(options.get("batch") or settings.batch or (8 if device.type == "cuda" else 1)), 1)
    progress = bool(options.get("progress", hooks.config.get("progress", True)))
    with stage("decode"):
        info = probe_video(Path(source_video)) if prepared is None else None  # a bad video fails before the audio
        wav = read_audio(audio, SAMPLE_RATE)
    with stage("audio feature"):
        vectors = audio_vectors(settings, hooks.config, wav, Path(audio))
    if prepared is None:
        prepared = prepare_source(hooks, source_video, options.get("fps"), options.get("face"), progress, info)
    source, fps = prepared.path, prepared.fps
    plan = plan_inference(len(prepared.landmarks), len(vectors), fps, settings.audio_radius, settings.audio_pad)
    plan_rows = len(vectors)
    if settings.audio_pad == "zero":  # the row past the end that zero-padded windows point at
        vectors = np.concatenate([vectors, np.zeros((1, vectors.shape[1]), vectors.dtype)])
    track = prepared.track(plan)
    if not hooks.prepared:
        seed = options.get("seed")
        with stage("prepare"):
            hooks.prepare(track, np.random.default_rng(int(settings.seed if seed is None else seed)))
    with stage("audio feature"):
        hooks.prepare_audio(wav, vectors[:plan_rows], plan)
    cache = None if hooks.crops_depend_on_plan else prepared.crop_cache
    count = len(plan)
    samples = min(len(wav), int(round(count / fps * SAMPLE_RATE)))
    overlap = device.type == "cuda" if settings.overlap_io is None else bool(settings.overlap_io)
    overlap = overlap and not counting_flops()  # FLOPs are counted in this thread only
    layout = torch.channels_last if settings.channels_last else torch.contiguous_format
    dubbed = 0

    def crop(frame: np.ndarray, m: int) -> tuple[torch.Tensor, Any] | None:
        with stage("crop"):
            if cache is None:
                return hooks.crop(frame, track, m)
            key = (int(plan.source_index[m]), tuple(int(i) for i in plan.landmark_windows[m]))
            if key not in cache:
                cache[key] = hooks.crop(frame, track, m)
            return cache[key]

    def prepared_frames() -> Iterator[tuple[np.ndarray, Any, torch.Tensor | None, np.ndarray | None]]:
        """Decode and crop, in output order (a background thread with ``overlap_io``)."""
        ordered = frames_in_order(source, fps, plan.source_index, settings.reverse_block_frames)
        for m, frame in enumerate(staged("decode", ordered)):
            cropped = crop(frame, m)
            if cropped is None:
                yield frame, None, None, None
            else:
                yield frame, cropped[1], cropped[0], np.ascontiguousarray(vectors[plan.audio_windows[m]].T)

    def paste_and_write(item: tuple[list[np.ndarray], list[Any], np.ndarray | None]) -> None:
        """Paste the generated faces back and encode (a background thread with ``overlap_io``)."""
        frames, infos, faces = item
        k = 0
        for frame, paste_info in zip(frames, infos):
            if paste_info is not None:
                with stage("paste"):
                    frame = hooks.paste(frame, faces[k], paste_info)
                k += 1
            with stage("encode"):
                writer.write(frame)

    def generate(pending: _Pending, generator: torch.nn.Module) -> None:
        nonlocal dubbed
        faces = None
        if pending.faces:
            with stage("generator"):
                batch = torch.stack(pending.faces).to(device).contiguous(memory_format=layout)
                audio_in = torch.from_numpy(np.stack(pending.audio)).to(device)
                with torch.no_grad(), autocast_for(device, dtype):
                    faces = hooks.generate(generator, batch, audio_in)
                faces = faces.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        sink.put((pending.frames, pending.infos, faces))
        dubbed += len(pending.faces)
        bar.update(len(pending))

    ahead = 2 * batch_size  # frames decoded ahead; the sink holds at most 2 batches behind
    label = settings.label
    with inference_mode(hooks.generator, settings.channels_last) as generator, \
            StagedContext("encode", VideoWriter(output, fps, audio=wav[:samples], sample_rate=SAMPLE_RATE)) as writer, \
            progress_bar(count, f"{label} dubbing", "frame", enabled=progress) as bar, \
            BackgroundSink(paste_and_write, 2, threaded=overlap, name=f"{label}-paste-encode") as sink, \
            contextlib.closing(prefetch(prepared_frames(), ahead, threaded=overlap, name=f"{label}-decode-crop")) as items:
        pending = _Pending()
        for frame, paste_info, face_crop, audio_window in items:
            pending.frames.append(frame)
            pending.infos.append(paste_info)
            if face_crop is not None:
                pending.faces.append(face_crop)
                pending.audio.append(audio_window)
            if len(pending) >= batch_size:
                generate(pending, generator)
                pending = _Pending()
        generate(pending, generator)
    if dubbed < count:
        logger.info("%s: %d of %d frames had no usable face and pass through unchanged", source, count - dubbed, count)
    return output
