"""DINet dubbing: stream a source video through the generator with a driving audio (docs/dinet.md).

Memory does not grow with the video: a first decode tracks landmarks (keeping only ``(T, 68, 2)``),
a short one fetches the 5 reference frames, and the last one streams frames in output order
(ping-pong included: backward runs are decoded in blocks of ``dinet.reverse_block_frames``) in
batches of ``dinet.infer_batch`` through the generator, pasting back and encoding as it goes. With
``dinet.overlap_io`` (default on CUDA) decoding and cropping run ahead of the generator, pasting and
encoding behind it, each in a background thread (``talkingface.background``).
"""
from __future__ import annotations

import contextlib
import logging
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from ...background import BackgroundSink, prefetch
from ...errors import AudioError, ConfigError, DataError
from ...face import FaceTracker, build_face_backend
from ...log import progress_bar
from ...media import iter_frames, probe_video, read_audio
from ...media import VideoWriter
from ...registry import AUDIO_FEATURES
from .data import crop_box, crop_face, crop_radius, face_size, frame_vectors, mouth_mask, plan_inference, plan_references
from .data.audio import feature_time_axis
from .data.inference_plan import INFERENCE_SCALE, paste_feathered, paste_official

if TYPE_CHECKING:
    from .model import DINet

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
AUDIO_FPS = 25.0
PASTES = ("feathered", "official")
Box4 = tuple[int, int, int, int]


# ---- audio ------------------------------------------------------------------------------------
def audio_vectors(model: "DINet", wav: np.ndarray, source: Path) -> np.ndarray:
    """``(T, C)`` 25 fps feature vectors of the whole driving audio (T = its length in 25 fps frames)."""
    name = str(model.options["audio_feature"])
    count = int(round(len(wav) * AUDIO_FPS / SAMPLE_RATE))
    if count < 1:
        raise AudioError(f"{source}: the driving audio is shorter than one 25 fps frame ({len(wav)} samples)")
    raw = AUDIO_FEATURES.get(name)(model.config).extract(wav, count, AUDIO_FPS)
    vectors = frame_vectors(raw, feature_time_axis(name, raw.shape[1:], str(model.options["audio_reduction"])))
    if vectors.shape[1] != model.audio_channels:
        raise ConfigError(f"feature {name!r} gives {vectors.shape[1]} values per frame, the model takes "
                          f"{model.audio_channels}")
    return vectors


# ---- faces ------------------------------------------------------------------------------------
class ChosenFace:
    """A face backend that, until the first detection, returns only face ``index`` counted left to right;
    afterwards the tracker follows that face (the detection overlapping it most)."""

    def __init__(self, backend: Any, index: int):
        self.backend, self.index, self.chosen = backend, int(index), False

    def detect(self, frame: np.ndarray) -> list:
        boxes = self.backend.detect(frame)
        if self.chosen:
            return boxes
        if len(boxes) <= self.index:
            return []
        self.chosen = True
        return [sorted(boxes, key=lambda box: box.center[0])[self.index]]

    def landmarks(self, frame: np.ndarray, box: Any) -> np.ndarray:
        return self.backend.landmarks(frame, box)


def face_choice(face: Any) -> int | None:
    """``"largest"`` -> None (the tracker's rule), an int or digit string -> that index."""
    if face is None or face == "largest":
        return None
    try:
        index = int(face)
    except (TypeError, ValueError):
        raise ConfigError(f"face must be 'largest' or a face index (0 = leftmost), got {face!r}") from None
    if index < 0:
        raise ConfigError(f"face index must be >= 0, got {index}")
    return index


def track_landmarks(model: "DINet", path: Path, fps: float, face: Any, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(landmarks (n, 68, 2) with NaN where no face, valid (n,))`` of the source at ``fps``."""
    pre = model.config.get("preprocess") or {}
    name = model.options["face_backend"] or pre.get("face_backend", "dlib")
    backend: Any = build_face_backend(str(name), model.config)
    index = face_choice(face)
    if index is not None:
        backend = ChosenFace(backend, index)
    tracker = FaceTracker(backend, int(pre.get("detect_every", 5)), int(model.options["infer_max_gap"]),
                          int(pre.get("smoothing_window", 5)))
    with progress_bar(None, "dinet landmarks", "frame", enabled=progress) as bar:
        for frame in iter_frames(path, fps=fps):
            tracker.update(frame)
            bar.update(1)
    try:
        track = tracker.finish()
    except DataError as exc:
        which = f" (face index {index})" if index is not None else ""
        raise DataError(f"{path}: {exc}{which}") from None
    for event in track.events:
        logger.info("%s: %s", path.name, event)
    return track.landmarks, track.valid


def face_box(landmarks: np.ndarray, valid: np.ndarray, frame: int, window: np.ndarray, scale: float,
             frame_size: tuple[int, int]) -> Box4 | None:
    """The official crop box of source ``frame`` (radius over the valid landmarks of ``window``), or None
    when the frame has no face or the box leaves the frame."""
    if not valid[frame]:
        return None
    window = np.asarray([w for w in window if valid[w]])
    box = crop_box(landmarks[frame], crop_radius(landmarks[window], scale))
    top, bottom, left, right = box
    if top < 0 or left < 0 or bottom > frame_size[0] or right > frame_size[1]:
        return None
    return box


# ---- frames in output order -------------------------------------------------------------------
def _runs(order: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """Split source indices into runs ``(first, last, step)`` of step +1 or -1."""
    i = 0
    while i < len(order):
        step = int(order[i + 1] - order[i]) if i + 1 < len(order) else 1
        step = step if step in (1, -1) else 1
        j = i + 1
        while j < len(order) and order[j] - order[j - 1] == step:
            j += 1
        yield int(order[i]), int(order[j - 1]), step
        i = j


def frames_in_order(path: Path, fps: float, order: np.ndarray, block: int) -> Iterator[np.ndarray]:
    """Source frames ``order[0], order[1], ...`` (ascending and descending runs), never holding more than
    ``block`` frames: forward runs stream, backward runs are decoded in blocks and played reversed."""
    last: tuple[int, np.ndarray] | None = None
    for first, end, step in _runs(order):
        if first == end and last is not None and last[0] == first:
            yield last[1]
            continue
        if step == 1:
            for index, frame in enumerate(iter_frames(path, fps=fps)):
                if index >= first:
                    last = (index, frame)
                    yield frame
                if index >= end:
                    break
            continue
        high = first
        while high >= end:
            low = max(end, high - block + 1)
            kept: deque = deque(maxlen=high - low + 1)
            for index, frame in enumerate(iter_frames(path, fps=fps)):
                if index >= low:
                    kept.append(frame)
                if index >= high:
                    break
            for offset, frame in enumerate(reversed(kept)):
                last = (high - offset, frame)
                yield frame
            high = low - 1


def fetch_frames(path: Path, fps: float, wanted: set[int]) -> dict[int, np.ndarray]:
    """The source frames ``wanted`` (one decode up to the last of them)."""
    found: dict[int, np.ndarray] = {}
    for index, frame in enumerate(iter_frames(path, fps=fps)):
        if index in wanted:
            found[index] = frame
        if len(found) == len(wanted):
            break
    return found


# ---- dubbing ----------------------------------------------------------------------------------
def _to_tensor(face: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(face.astype(np.float32) / 255.0).permute(2, 0, 1)


def reference_tensor(model: "DINet", path: Path, fps: float, plan: Any, landmarks: np.ndarray, valid: np.ndarray,
                     frame_size: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """``(15, H, W)``: the 5 references chosen like inference.py (seeded); a pick without a usable face is
    replaced by a random source frame that has one."""
    size = face_size(model.inference_mouth)
    count = len(landmarks)
    usable = [f for f in range(count)
              if face_box(landmarks, valid, f, np.clip(np.arange(f - 2, f + 3), 0, count - 1), 1.05, frame_size)]
    if not usable:
        raise DataError(f"{path}: no frame has a face whose DINet crop fits inside the frame")
    picks: list[tuple[int, Box4]] = []
    for ref in plan_references(plan, rng):
        box = face_box(landmarks, valid, ref.source_frame, ref.landmark_window, ref.scale, frame_size)
        frame = ref.source_frame
        if box is None:
            frame = int(rng.choice(usable))
            window = np.clip(np.arange(frame - 2, frame + 3), 0, count - 1)
            box = face_box(landmarks, valid, frame, window, ref.scale, frame_size)
        picks.append((frame, box))
    frames = fetch_frames(path, fps, {f for f, _ in picks})
    return torch.cat([_to_tensor(crop_face(frames[f], box, size)) for f, box in picks], 0)


@contextlib.contextmanager
def inference_generator(model: "DINet", channels_last: bool) -> Iterator[torch.nn.Module]:
    """The generator in eval mode (and, with ``channels_last``, in that memory format, which oneDNN and
    cuDNN run faster: +10–20 % at mouths 128/256 on 2 CPU cores); both are undone on exit."""
    generator = model.networks.generator
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


def inference_autocast(model: "DINet", amp: bool) -> contextlib.AbstractContextManager:
    """fp16 autocast for dubbing on CUDA when ``amp``; a no-op on CPU (no fp16/bf16 speed-up there)."""
    if amp and model.device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


class _Pending:
    """Output frames waiting for the generator (those with a face) or passing through, in order."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.boxes: list[Box4 | None] = []
        self.faces: list[torch.Tensor] = []
        self.audio: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.frames)


def dub(model: "DINet", source_video: str | Path, audio: str | Path, output: str | Path, **options: Any) -> Path:
    """Write ``output``: ``source_video`` dubbed with ``audio`` (see the module docstring and docs/dinet.md)."""
    opts = model.options
    unknown = set(options) - {"fps", "face", "paste", "batch", "feather", "progress", "seed"}
    if unknown:
        raise ConfigError(f"unknown DINet generate option(s): {', '.join(sorted(unknown))}")
    source, output = Path(source_video), Path(output)
    paste = str(options.get("paste") or opts["paste"])
    if paste not in PASTES:
        raise ConfigError(f"paste must be one of {PASTES}, got {paste!r}")
    feather = options.get("feather", opts["feather"])
    feather = float("inf") if feather is None else float(feather)
    batch_size = max(int(options.get("batch") or opts["infer_batch"] or (8 if model.device.type == "cuda" else 1)), 1)
    progress = bool(options.get("progress", model.config.get("progress", True)))
    info = probe_video(source)
    fps = float(options.get("fps") or info.fps)
    wav = read_audio(audio, SAMPLE_RATE)
    vectors = audio_vectors(model, wav, Path(audio))

    landmarks, valid = track_landmarks(model, source, fps, options.get("face", opts["face"]), progress)
    frame_size = (info.height, info.width)
    plan = plan_inference(len(landmarks), len(vectors), fps)
    rng = np.random.default_rng(int(options.get("seed", opts["seed"])))
    device = model.device
    refs = reference_tensor(model, source, fps, plan, landmarks, valid, frame_size, rng).to(device)
    size = face_size(model.inference_mouth)
    mask = torch.from_numpy(mouth_mask(*size, model.inference_mouth)).to(device)
    count = len(plan)
    samples = min(len(wav), int(round(count / fps * SAMPLE_RATE)))
    layout = torch.channels_last if opts["channels_last"] else torch.contiguous_format
    refs = refs[None].contiguous(memory_format=layout)
    amp = bool(opts["infer_amp"])
    overlap = device.type == "cuda" if opts["overlap_io"] is None else bool(opts["overlap_io"])
    dubbed = 0

    def prepared() -> Iterator[tuple[np.ndarray, Box4 | None, torch.Tensor | None, np.ndarray | None]]:
        """Decode and crop, in output order (a background thread with ``overlap_io``)."""
        frames = frames_in_order(source, fps, plan.source_index, int(opts["reverse_block_frames"]))
        for m, frame in enumerate(frames):
            box = face_box(landmarks, valid, int(plan.source_index[m]), plan.landmark_windows[m], INFERENCE_SCALE,
                           frame_size)
            if box is None:
                yield frame, None, None, None
            else:
                yield (frame, box, _to_tensor(crop_face(frame, box, size)),
                       np.ascontiguousarray(vectors[plan.audio_windows[m]].T))

    def paste_and_write(item: tuple[list[np.ndarray], list[Box4 | None], np.ndarray | None]) -> None:
        """Paste the generated faces back and encode (a background thread with ``overlap_io``)."""
        frames, boxes, faces = item
        k = 0
        for frame, box in zip(frames, boxes):
            if box is not None:
                frame = (paste_official(frame, faces[k], box) if paste == "official"
                         else paste_feathered(frame, faces[k], box, feather))
                k += 1
            writer.write(frame)

    def generate(pending: _Pending, generator: torch.nn.Module) -> None:
        nonlocal dubbed
        faces = None
        if pending.faces:
            masked = (torch.stack(pending.faces).to(device) * mask).contiguous(memory_format=layout)
            audio_in = torch.from_numpy(np.stack(pending.audio)).to(device)
            with torch.no_grad(), inference_autocast(model, amp):
                faces = generator(masked, refs.expand(len(masked), -1, -1, -1), audio_in)
            faces = faces.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        sink.put((pending.frames, pending.boxes, faces))
        dubbed += len(pending.faces)
        bar.update(len(pending))

    ahead = 2 * batch_size  # frames decoded ahead; the sink holds at most 2 batches behind
    with inference_generator(model, bool(opts["channels_last"])) as generator, \
            VideoWriter(output, fps, audio=wav[:samples], sample_rate=SAMPLE_RATE) as writer, \
            progress_bar(count, "dinet dubbing", "frame", enabled=progress) as bar, \
            BackgroundSink(paste_and_write, 2, threaded=overlap, name="dinet-paste-encode") as sink, \
            contextlib.closing(prefetch(prepared(), ahead, threaded=overlap, name="dinet-decode-crop")) as items:
        pending = _Pending()
        for frame, box, face, audio_window in items:
            pending.frames.append(frame)
            pending.boxes.append(box)
            if face is not None:
                pending.faces.append(face)
                pending.audio.append(audio_window)
            if len(pending) >= batch_size:
                generate(pending, generator)
                pending = _Pending()
        generate(pending, generator)
    if dubbed < count:
        logger.info("%s: %d of %d frames had no usable face and pass through unchanged", source, count - dubbed, count)
    return output
