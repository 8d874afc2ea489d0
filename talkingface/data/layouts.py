"""Built-in dataset layouts: ``custom``, ``hdtf``, ``lrs2`` and ``demo``."""
from __future__ import annotations

import logging
import re
from pathlib import Path

from ..errors import DataError
from ..optional import require
from ..registry import register_dataset
from .preprocess import Segment
from .video_layout import VIDEO_SUFFIXES, Job, VideoLayout, clip_name, split_groups

logger = logging.getLogger(__name__)


def video_files(folder: Path) -> list[Path]:
    """The video files directly inside ``folder``, sorted; a missing folder is an error."""
    if not folder.is_dir():
        raise DataError(f"raw data folder {folder} not found (set data.raw_dir or data.root)")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def scene_segments(path: Path, stem: str, threshold: float, min_seconds: float) -> list[Segment]:
    """Shots of ``path`` found by PySceneDetect's content detector (optional extra ``scenes``)."""
    scenedetect = require("scenedetect", "preprocess.split_scenes (PySceneDetect)", "scenes")
    scenes = scenedetect.detect(str(path), scenedetect.ContentDetector(threshold=threshold))
    if not scenes:
        return [Segment(stem)]
    return [Segment(f"{stem}_s{k:03d}", start.seconds, end.seconds)
            for k, (start, end) in enumerate(scenes) if end.seconds - start.seconds >= min_seconds]


@register_dataset("custom")
class CustomVideos(VideoLayout):
    """A folder of talking-head videos (``data.raw_dir``, default ``<data.root>/custom``), one clip per
    file or per shot with ``preprocess.split_scenes``."""

    def jobs(self) -> list[Job]:
        opts = self.config["preprocess"]
        jobs = []
        for path in video_files(self.raw_root):
            stem = clip_name(path.stem)
            segments = scene_segments(path, stem, float(opts["scene_threshold"]), float(opts["min_clip_seconds"])) \
                if opts["split_scenes"] else [Segment(stem)]
            jobs.append((path, segments))
        return jobs


_TIME = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")


def parse_timestamp(text: str, source: str) -> float:
    """``mm:ss`` or ``hh:mm:ss`` -> seconds."""
    match = _TIME.match(text)
    if not match:
        raise DataError(f"{source}: bad time {text!r} (expected mm:ss or hh:mm:ss)")
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def parse_hdtf_annotations(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Read an HDTF ``*_annotion_time.txt``: ``Name.mp4 00:20-01:35 [01:40-02:00 ...]`` per line."""
    ranges: dict[str, list[tuple[float, float]]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{number}"
        if len(parts) < 2:
            raise DataError(f"{where}: expected '<video> <start>-<end> ...', got {line!r}")
        spans = []
        for span in parts[1:]:
            if "-" not in span:
                raise DataError(f"{where}: bad range {span!r} (expected start-end)")
            start, end = (parse_timestamp(t, where) for t in span.split("-", 1))
            if end <= start:
                raise DataError(f"{where}: range {span!r} ends before it starts")
            spans.append((start, end))
        spans.sort()
        if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
            raise DataError(f"{where}: ranges overlap")
        ranges[Path(parts[0]).stem] = spans
    return ranges


@register_dataset("hdtf")
class HDTF(VideoLayout):
    """HDTF: raw videos plus the dataset's ``*_annotion_time.txt`` files in ``<data.root>/hdtf``; each
    annotated range becomes a clip ``<video>_<k>`` at 25 fps, uncropped and unresized (as DINet's
    data). ``hdtf.train_list`` (e.g. DINet's ``training_video_name.txt``) pins the training videos."""

    default_config = {"hdtf": {"train_list": None}}

    def jobs(self) -> list[Job]:
        annotation_files = sorted(self.raw_root.glob("*_annotion_time.txt")) if self.raw_root.is_dir() else []
        if not annotation_files:
            raise DataError(f"no HDTF *_annotion_time.txt files in {self.raw_root}")
        annotations: dict[str, list[tuple[float, float]]] = {}
        for path in annotation_files:
            annotations.update(parse_hdtf_annotations(path))
        videos = {p.stem: p for p in video_files(self.raw_root)}
        missing = sorted(set(annotations) - set(videos))
        if missing:
            logger.warning("%d annotated HDTF videos are not in %s (e.g. %s)", len(missing), self.raw_root,
                           ", ".join(missing[:3]))
        unannotated = sorted(set(videos) - set(annotations))
        if unannotated:
            logger.warning("%d videos in %s have no annotation and are skipped (e.g. %s)", len(unannotated),
                           self.raw_root, ", ".join(unannotated[:3]))
        return [(videos[stem], [Segment(f"{clip_name(stem)}_{k:02d}", start, end)
                                for k, (start, end) in enumerate(annotations[stem])])
                for stem in sorted(set(annotations) & set(videos))]

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "hdtf": self.config["hdtf"].to_dict()}

    def assign_splits(self, groups: dict[str, list[str]]) -> dict[str, list[str]]:
        """With ``hdtf.train_list`` its videos are train and the others are shared between val and test
        in the configured ratio; otherwise the usual seeded split by video."""
        train_list = self.config["hdtf"]["train_list"]
        if not train_list:
            return super().assign_splits(groups)
        path = Path(train_list)
        if not path.is_file():
            raise DataError(f"hdtf.train_list {path} not found")
        listed = {Path(line.strip()).stem for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
        fractions = self.config["preprocess"]["split"]
        val, test = float(fractions["val"]), float(fractions["test"])
        others = {s: c for s, c in groups.items() if Path(s).stem not in listed}
        splits = split_groups(others, val / (val + test), test / (val + test), int(self.config["seed"]))
        splits["train"] = sorted(c for s, clips in groups.items() if s not in others for c in clips)
        return splits


@register_dataset("lrs2")
class LRS2(VideoLayout):
    """LRS2-BBC: pre-cropped 25 fps clips ``<data.root>/lrs2/main/<speaker>/<id>.mp4`` and the official
    ``train.txt``, ``val.txt``, ``test.txt`` lists (``<speaker>/<id>`` per line, flags after a space)."""

    def _lists(self) -> dict[str, list[str]]:
        lists = {}
        for split in ("train", "val", "test"):
            path = self.raw_root / f"{split}.txt"
            if not path.is_file():
                raise DataError(f"LRS2 split list {path} not found")
            lists[split] = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return lists

    def jobs(self) -> list[Job]:
        jobs, absent = [], []
        for entries in self._lists().values():
            for entry in entries:
                path = self.raw_root / "main" / f"{entry}.mp4"
                if path.is_file():
                    jobs.append((path, [Segment(clip_name(entry.replace("/", "_")))]))
                else:
                    absent.append(entry)
        if absent:
            logger.warning("%d LRS2 clips listed but not found under %s/main (e.g. %s)", len(absent),
                           self.raw_root, ", ".join(absent[:3]))
        return jobs

    def assign_splits(self, groups: dict[str, list[str]]) -> dict[str, list[str]]:
        done = {c for clips in groups.values() for c in clips}
        return {split: [n for n in (clip_name(e.replace("/", "_")) for e in entries) if n in done]
                for split, entries in self._lists().items()}


@register_dataset("demo")
class Demo(VideoLayout):
    """The embedded demo: synthetic talking-head videos generated offline (see docs/demo_dataset.md),
    written to ``<data.root>/demo`` and then processed exactly like ``custom``."""

    default_config = {"demo": {"clips": 8, "size": 256}}

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "demo": self.config["demo"].to_dict(), "seed": self.config["seed"]}

    def jobs(self) -> list[Job]:
        from .demo import write_demo_videos

        opts = self.config["demo"]
        paths = write_demo_videos(self.raw_root, seed=int(self.config["seed"]), num_clips=int(opts["clips"]),
                                  size=int(opts["size"]))
        return [(path, [Segment(clip_name(path.stem))]) for path in paths]
