"""Dataset layouts end to end: custom, hdtf, lrs2, demo; resumable, idempotent, bad files."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, subprocess_env
from helpers import cli_tokens
from talkingface.cli import main
from talkingface.data import ClipStore
from test_preprocess import face_video


def overrides(tmp: Path, **preprocess) -> list[str]:
    return cli_tokens({"progress": False, "data": {"processed_dir": str(tmp / "processed")},
                       "preprocess": {"workers": 1, **preprocess}})


def snapshot(store: ClipStore) -> dict:
    """Everything that must be identical between two builds of the same store."""
    result = {split: store.split_names(split) for split in ("train", "val", "test")}
    for clip in sorted((store.root / "clips").iterdir()):
        meta = json.loads((clip / "meta.json").read_text())
        meta.pop("source")
        result[clip.name] = (meta, np.load(clip / "landmarks.npy").tobytes(), np.load(clip / "features" / "mel.npy").tobytes())
    return result


def make_videos(folder: Path, count: int, seconds: float = 1.2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [face_video(folder / f"speaker{i}.mp4", seconds=seconds + 0.4 * i) for i in range(count)]


def test_custom_folder_via_cli_gives_a_split_store(tmp_path: Path, capsys):
    make_videos(tmp_path / "raw", 3)
    code = main(["preprocess", "--dataset", "custom", "--data_dir", str(tmp_path / "raw"), *overrides(tmp_path)])
    assert code == 0, capsys.readouterr().err
    store = ClipStore(capsys.readouterr().out.strip())
    splits = {s: store.split_names(s) for s in ("train", "val", "test")}
    assert sorted(sum(splits.values(), [])) == ["speaker0", "speaker1", "speaker2"]
    assert all(len(v) == 1 for v in splits.values())
    assert json.loads((store.root / "store.json").read_text())["complete"] is True


def test_killed_build_resumes_to_an_identical_store(tmp_path: Path):
    make_videos(tmp_path / "raw", 4)
    straight = tmp_path / "straight"
    assert main(["preprocess", "--dataset", "custom", "--data_dir", str(tmp_path / "raw"),
                 *overrides(straight)]) == 0
    command = [sys.executable, "-m", "talkingface.cli", "preprocess", "--dataset", "custom", "--data_dir",
               str(tmp_path / "raw"), *overrides(tmp_path)]
    child = subprocess.Popen(command, env=subprocess_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    clips = tmp_path / "processed" / "custom" / "clips"
    deadline = time.monotonic() + 120
    while not list(clips.glob("*/meta.json")) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done = len(list(clips.glob("*/meta.json")))
    assert 1 <= done < 4, "the kill must land mid-build"
    assert main(["preprocess", "--dataset", "custom", "--data_dir", str(tmp_path / "raw"), *overrides(tmp_path)]) == 0
    assert not list(clips.glob(".*")), "temporary folders of the killed run are cleaned up"
    assert snapshot(ClipStore(tmp_path / "processed" / "custom")) == snapshot(ClipStore(straight / "processed" / "custom"))


def test_bad_files_fail_the_build_unless_skipped(tmp_path: Path, capsys):
    make_videos(tmp_path / "raw", 3)
    (tmp_path / "raw" / "broken.mp4").write_bytes(b"\x00" * 1000)
    args = ["preprocess", "--dataset", "custom", "--data_dir", str(tmp_path / "raw")]
    assert main([*args, *overrides(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "1 of 4 source files failed" in err and "broken.mp4" in err and "preprocess.skip_bad=true" in err
    store = ClipStore(tmp_path / "processed" / "custom")
    assert json.loads((store.root / "store.json").read_text())["complete"] is False
    assert len(list((store.root / "clips").glob("*/meta.json"))) == 3  # the good ones are kept, complete
    assert main([*args, *overrides(tmp_path, skip_bad=True)]) == 0
    assert "broken" in json.loads((store.root / "failures.json").read_text()).__repr__()
    assert "broken" not in sum((store.split_names(s) for s in ("train", "val", "test")), [])


@pytest.mark.slow
def test_parallel_workers_give_the_same_store(tmp_path: Path):
    make_videos(tmp_path / "raw", 3)
    for name, workers in (("one", 1), ("two", 2)):
        assert main(["preprocess", "--dataset", "custom", "--data_dir", str(tmp_path / "raw"),
                     *overrides(tmp_path / name, workers=workers)]) == 0
    assert snapshot(ClipStore(tmp_path / "one" / "processed" / "custom")) == \
        snapshot(ClipStore(tmp_path / "two" / "processed" / "custom"))


def test_lrs2_layout_follows_the_official_lists(tmp_path: Path):
    raw = tmp_path / "lrs2"
    for entry in ("6330311066473698535/00011", "5535415699068794046/00001", "5535415699068794046/00002"):
        (raw / "main" / entry.split("/")[0]).mkdir(parents=True, exist_ok=True)
        face_video(raw / "main" / f"{entry}.mp4", seconds=1.0)
    (raw / "train.txt").write_text("5535415699068794046/00001\n5535415699068794046/00002\n")
    (raw / "val.txt").write_text("")
    (raw / "test.txt").write_text("6330311066473698535/00011 NF\n")
    assert main(["preprocess", "--dataset", "lrs2", "--data_dir", str(raw), *overrides(tmp_path)]) == 0
    store = ClipStore(tmp_path / "processed" / "lrs2")
    assert store.split_names("train") == ["5535415699068794046_00001", "5535415699068794046_00002"]
    assert store.split_names("test") == ["6330311066473698535_00011"] and store.split_names("val") == []


def test_hdtf_layout_cuts_annotated_ranges_and_keeps_videos_in_one_split(tmp_path: Path):
    raw = tmp_path / "hdtf"
    raw.mkdir()
    for name in ("WDA_A", "WDA_B", "WRA_C"):
        face_video(raw / f"{name}.mp4", seconds=3.0)
    (raw / "WDA_annotion_time.txt").write_text("WDA_A.mp4 00:00-00:01 00:01.5-00:02.5\nWDA_B.mp4 00:01-00:02\n"
                                              "WDA_missing.mp4 00:00-00:05\n")
    (raw / "WRA_annotion_time.txt").write_text("WRA_C.mp4 00:00-00:01\n")
    assert main(["preprocess", "--dataset", "hdtf", "--data_dir", str(raw), *overrides(tmp_path)]) == 0
    store = ClipStore(tmp_path / "processed" / "hdtf")
    splits = {s: store.split_names(s) for s in ("train", "val", "test")}
    assert sorted(sum(splits.values(), [])) == ["WDA_A_00", "WDA_A_01", "WDA_B_00", "WRA_C_00"]
    assert any(set(v) == {"WDA_A_00", "WDA_A_01"} for v in splits.values())  # never split across sets
    assert store.clip("WDA_A_01").meta["frames"] == 25


def test_demo_dataset_is_generated_and_processed_like_a_real_one(tmp_path: Path, capsys):
    args = ["preprocess", "--dataset", "demo", *cli_tokens({"demo": {"clips": 3}, "data": {"root": str(tmp_path / "raw")}}),
            *overrides(tmp_path)]
    assert main(args) == 0, capsys.readouterr().err
    store = ClipStore(tmp_path / "processed" / "demo")
    names = sorted(sum((store.split_names(s) for s in ("train", "val", "test")), []))
    assert names == ["demo_00", "demo_01", "demo_02"]
    for name in names:
        clip = store.clip(name)
        truth = json.loads((tmp_path / "raw" / "demo" / f"{name}.json").read_text())
        assert clip.meta["face_valid_fraction"] == 1.0
        landmarks = np.load(clip.root / "landmarks.npy")
        gap = landmarks[:, 66, 1] - landmarks[:, 62, 1]  # inner lips: the mouth opening the pipeline measured
        opening = np.asarray(truth["mouth_opening"])[: len(gap)]
        assert np.corrcoef(gap, opening)[0, 1] > 0.8  # the store's landmarks follow the animated mouth


def test_custom_videos_can_be_split_into_shots(tmp_path: Path):
    pytest.importorskip("scenedetect")
    from test_preprocess import SIZE, face_image

    first = face_image()
    second = np.ascontiguousarray(first[:, ::-1])  # the mirrored shot: a hard cut, the face still visible
    raw = tmp_path / "raw"
    raw.mkdir()
    frames = [first] * 40 + [second] * 40
    from talkingface.media import VideoWriter
    from test_preprocess import tone

    with VideoWriter(raw / "interview.mp4", 25, audio=tone(80 / 25), preset="ultrafast") as writer:
        for frame in frames:
            writer.write(frame)
    assert main(["preprocess", "--dataset", "custom", "--data_dir", str(raw),
                 *overrides(tmp_path, split_scenes=True, min_clip_seconds=1.0, split={"val": 0.0, "test": 0.0})]) == 0
    store = ClipStore(tmp_path / "processed" / "custom")
    assert store.split_names("train") == ["interview_s000", "interview_s001"]
    assert [store.clip(n).meta["frames"] for n in store.split_names("train")] == [40, 40]
    assert SIZE == store.clip("interview_s000").meta["width"]
