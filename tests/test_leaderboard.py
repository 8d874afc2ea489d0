"""``talkingface leaderboard`` (talkingface/leaderboard/): entries, the ground-truth and control rows, the protocol
card and its refusal, resuming after a kill without dubbing a clip twice, speed from benchmark reports, the reports.
The tiny example plugin's model and dataset keep it to seconds; the page itself is opened in Chromium by
tests/test_leaderboard_browser.py."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import talkingface
from conftest import subprocess_env
from helpers import cli_tokens
from talkingface.errors import ConfigError, DataError
from talkingface.leaderboard import card_differences, collect_entries, leaderboard, parse_entry
from talkingface.leaderboard.run import GROUND_TRUTH, control_label
from talkingface.media import VideoWriter, iter_frames, read_audio, read_frames
from talkingface.pipeline import preprocess
from talkingface.weights import sha256_of

SHIFT = 0.2


@pytest.fixture
def board_setup(tiny, tmp_path):
    """The tiny example dataset (2 test clips), two random checkpoints of the example model and the config tokens."""
    config = tiny(example_shapes={"clips": 5, "seconds": 0.48, "size": 32, "val_clips": 1, "test_clips": 2},
                  evaluate={"metrics": ["psnr", "ssim", "fid"], "strip_frames": 3},
                  plugins=["talkingface_example", "killer_plugin"])
    checkpoints = {}
    for seed, name in enumerate(("a", "b")):
        torch.manual_seed(seed)
        model = talkingface.build_model("example_inpainter", talkingface.load_config("example_inpainter",
                                                                                     "example_shapes", config=config))
        checkpoints[name] = model.save_weights(tmp_path / f"inpainter-{name}.pth")
    config.pop("example_inpainter")  # the board's config has no model section: each entry brings its own
    store = preprocess("example_shapes", talkingface.load_config(None, "example_shapes", config=config))
    return config, checkpoints, store


def darker_copies(store, folder: Path) -> Path:
    """Another tool's output: every test clip's frames darkened by 40, its own audio."""
    for clip in store.split("test"):
        with VideoWriter(folder / f"{clip.name}.mp4", 25, audio=read_audio(clip.audio_path)) as writer:
            for frame in iter_frames(clip.video_path):
                writer.write(np.clip(frame.astype(int) - 40, 0, 255).astype(np.uint8))
    return folder


def test_entry_specs(tmp_path, board_setup):
    _, checkpoints, store = board_setup
    folder = darker_copies(store, tmp_path / "other")
    entry = parse_entry(f"example_inpainter={checkpoints['a']}")
    assert (entry.model, entry.checkpoint, entry.videos) == ("example_inpainter", checkpoints["a"], None)
    entry = parse_entry(f"mine=example_inpainter:{checkpoints['b']}")
    assert (entry.label, entry.model) == ("mine", "example_inpainter")
    entry = parse_entry(f"wav2lip={folder}")
    assert entry.videos == folder and not entry.dubbed_here
    for bad, message in ((f"x={tmp_path / 'missing'}", "neither"), ("x", "expected NAME="),
                         (f"a b={folder}", "letters"), (f"example_inpainter={tmp_path / 'none.pth'}", "not found")):
        with pytest.raises(ConfigError, match=message):
            parse_entry(bad)
    spec = tmp_path / "entries.yaml"
    spec.write_text(f"entries:\n  - name: a\n    model: example_inpainter\n    checkpoint: {checkpoints['a']}\n"
                    f"  - name: other\n    videos: {folder}\n", encoding="utf-8")
    assert [e.label for e in collect_entries([], [spec])] == ["a", "other"]
    with pytest.raises(ConfigError, match="used twice"):
        collect_entries([f"a={folder}"], [spec])
    spec.write_text("entries:\n  - name: a\n    model: example_inpainter\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="entry 1: give either"):
        collect_entries([], [spec])


def test_rows_card_reports_resume_and_refusal(tmp_path, board_setup, monkeypatch, capsys):
    config, checkpoints, store = board_setup
    clips = store.split("test")
    other = darker_copies(store, tmp_path / "other")
    entries = collect_entries([f"a=example_inpainter:{checkpoints['a']}", f"b=example_inpainter:{checkpoints['b']}",
                               f"other={other}"])
    out = tmp_path / "board"
    dubs: list[str] = []
    from talkingface_example import ExampleInpainter

    original = ExampleInpainter.generate

    def counted(self, video, audio, output, **options):
        dubs.append(Path(output).name)
        return original(self, video, audio, output, **options)

    monkeypatch.setattr(ExampleInpainter, "generate", counted)
    board = leaderboard("example_shapes", entries, out, control_shift=SHIFT, cli_overrides=config)
    assert len(dubs) == 4  # two model entries x two clips; the folder entry is scored as it is
    labels = [row.label for row in board.rows]
    assert labels == [GROUND_TRUTH, control_label(SHIFT), "a", "b", "other"]
    rows = {row.label: row for row in board.rows}
    # the ground truth scored against itself is the metrics' ceiling
    assert rows[GROUND_TRUTH].summary["psnr"] == float("inf") and rows[GROUND_TRUTH].summary["ssim"] == 1.0
    # the control plays the ground truth's frames SHIFT s late (its last frames first) under its own audio
    steps = int(round(SHIFT * 25))
    control = rows[control_label(SHIFT)]
    assert control.summary["psnr"] < 40 and control.summary["ssim"] < rows[GROUND_TRUTH].summary["ssim"]
    for clip in clips:
        video = Path(control.videos[clip.name])
        truth, late = read_frames(clip.video_path).astype(float), read_frames(video).astype(float)
        assert late.shape == truth.shape
        rolled, unmoved = np.abs(late - np.roll(truth, steps, axis=0)).mean(), np.abs(late - truth).mean()
        assert rolled < 5 and unmoved > 2 * rolled, (rolled, unmoved)  # the same frames re-encoded, moved
        audio, original_audio = read_audio(video), read_audio(clip.audio_path)
        assert np.abs(audio[:len(original_audio)] - original_audio).mean() < 0.01  # its own audio, AAC-coded
    # darkening by 40 gives a PSNR near 20 log10(255 / 40) = 16.1 dB
    assert rows["other"].summary["psnr"] == pytest.approx(16.1, abs=0.6)
    assert rows["a"].summary["psnr"] != rows["b"].summary["psnr"]
    assert rows["a"].checkpoint_sha256 == sha256_of(checkpoints["a"])
    assert rows["a"].summary["fid"].startswith("skipped (")
    assert [c["video"] for c in rows["a"].clips] == [clip.name for clip in clips]
    card = json.loads((out / "protocol.json").read_text())
    assert card["clips"] == [clip.name for clip in clips] and len(card["clip_list_sha256"]) == 64
    assert card["metrics"] == ["psnr", "ssim"] and "fid" in card["metrics_skipped"]
    assert card["control_audio_shift"] == SHIFT and card["evaluate"]["ssim_preset"] == "skimage"
    for name in ("leaderboard.json", "leaderboard.md", "leaderboard.csv", "leaderboard.txt", "index.html"):
        text = (out / name).read_text()
        assert all(label in text for label in labels), name
    assert card["clip_list_sha256"] in (out / "leaderboard.md").read_text()
    assert sorted(p.name for p in (out / "strips").glob("*.png")) == sorted(f"{c.name}.png" for c in clips)
    assert "ground truth" in capsys.readouterr().out

    # a rerun dubs nothing and scores the same; naming fewer entries keeps the others' rows (same card)
    dubs.clear()
    again = leaderboard("example_shapes", entries[:1], out, control_shift=SHIFT, cli_overrides=config)
    assert dubs == []
    assert [row.label for row in again.rows] == labels
    assert {r.label: r.summary for r in again.rows} == {r.label: r.summary for r in board.rows}

    # another protocol is refused, naming the settings that differ; nothing in the folder changes
    before = (out / "leaderboard.json").read_text()
    with pytest.raises(ConfigError, match=r"metrics: .*psnr.*ssim.* -> .*psnr"):
        leaderboard("example_shapes", entries, out, metrics=["psnr"], control_shift=SHIFT, cli_overrides=config)
    with pytest.raises(ConfigError, match="control_audio_shift"):
        leaderboard("example_shapes", entries, out, control_shift=0.3, cli_overrides=config)
    assert (out / "leaderboard.json").read_text() == before
    assert card_differences(card, card) == []

    # another tool's folder without one of the clips: an error naming it, before anything is dubbed
    (other / f"{clips[1].name}.mp4").unlink()
    dubs.clear()
    with pytest.raises(DataError, match=f"lacks 1 of the 2 clips' videos: {clips[1].name}.mp4"):
        leaderboard("example_shapes", entries, tmp_path / "board2", control_shift=SHIFT, cli_overrides=config)
    assert dubs == []


def test_killed_leaderboard_resumes_without_dubbing_twice(tmp_path, board_setup, monkeypatch):
    """The CLI killed (SIGKILL) at its second dub; the rerun dubs only the clip that was missing."""
    config, _, store = board_setup
    model = talkingface.build_model("example_killed_dub", talkingface.load_config(
        "example_killed_dub", "example_shapes", config={**config, "kill_at_generate": 2,
                                                        "example_inpainter": {"channels": 8}}))
    checkpoint = model.save_weights(tmp_path / "killed.pth")
    out = tmp_path / "board"
    command = [sys.executable, "-m", "talkingface.cli", "leaderboard", "--dataset", "example_shapes",
               "--entries", f"k=example_killed_dub:{checkpoint}", "--out", str(out), "--control-shift", str(SHIFT),
               *cli_tokens(config)]
    killed = subprocess.run(command, env=subprocess_env(threads=1), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    clips = [clip.name for clip in store.split("test")]
    videos = out / "entries" / "k" / "videos"
    assert sorted(p.name for p in videos.iterdir()) == [f"{clips[0]}.mp4"]  # atomic: no partial second file
    first = (videos / f"{clips[0]}.mp4").stat().st_mtime_ns
    assert not (out / "leaderboard.json").exists()

    from killer_plugin import KilledDubber

    dubbed: list[str] = []
    original = KilledDubber.generate
    monkeypatch.setattr(KilledDubber, "generate",
                        lambda self, v, a, o, **kw: dubbed.append(Path(o).name) or original(self, v, a, o, **kw))
    monkeypatch.setattr(KilledDubber, "calls", 5)  # this process must not kill itself
    board = leaderboard("example_shapes", collect_entries([f"k=example_killed_dub:{checkpoint}"]), out,
                        control_shift=SHIFT, cli_overrides=config)
    assert dubbed == [f"{clips[1]}.mp4"]
    assert (videos / f"{clips[0]}.mp4").stat().st_mtime_ns == first
    assert [row.label for row in board.rows] == [GROUND_TRUTH, control_label(SHIFT), "k"]


def test_speed_from_benchmark_reports(tmp_path, board_setup, monkeypatch):
    """frames/s of an entry from a benchmark report of the same weights on this machine; another machine's run and
    another checkpoint's are not used."""
    from talkingface.benchmark.machine import cpu_model

    config, checkpoints, _ = board_setup
    digest = sha256_of(checkpoints["a"])

    def run(dtype, fps, sha, cpu):
        return {"model": "example_inpainter", "dtype": dtype, "frames_per_s": fps, "checkpoint_sha256": sha,
                "size": [32, 32], "machine": {"device_name": cpu, "torch_threads": 2}}

    report = tmp_path / "benchmark.json"
    report.write_text(json.dumps({"runs": [run("bf16", 9.0, digest, cpu_model()), run("fp32", 5.0, digest, cpu_model()),
                                           run("fp32", 99.0, digest, "another CPU"),
                                           run("fp32", 77.0, "0" * 64, cpu_model())]}))
    entries = collect_entries([f"a=example_inpainter:{checkpoints['a']}", f"b=example_inpainter:{checkpoints['b']}"])
    board = leaderboard("example_shapes", entries, tmp_path / "board", control_shift=None, speed_files=[report],
                        cli_overrides=config)
    rows = {row.label: row for row in board.rows}
    assert list(rows) == [GROUND_TRUTH, "a", "b"]
    assert rows["a"].speed["frames_per_s"] == {"fp32": 5.0, "bf16": 9.0} and rows["b"].speed is None
    assert cpu_model() in board.speed_note
    text = (tmp_path / "board" / "leaderboard.txt").read_text()
    assert "5 (fp32) / 9 (bf16)" in text and cpu_model() in text
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="not a talkingface benchmark report"):
        leaderboard("example_shapes", entries, tmp_path / "board3", speed_files=[bad], cli_overrides=config)
    assert not (tmp_path / "board3").exists()  # refused before any output


def test_report_page_in_headless_chromium(tmp_path, board_setup):
    """The static page opened from disk (no server): every row in the table, every clip's videos play, the strips
    load; a screenshot is written beside the report."""
    from browser import chromium, play, require_browser
    from selenium.webdriver.common.by import By

    require_browser()
    config, checkpoints, store = board_setup
    other = darker_copies(store, tmp_path / "other")
    out = tmp_path / "board"
    board = leaderboard("example_shapes", collect_entries([f"a=example_inpainter:{checkpoints['a']}", f"other={other}"]),
                        out, control_shift=SHIFT, cli_overrides=config)
    labels = [row.label for row in board.rows]
    with chromium() as driver:
        driver.get((out / "index.html").resolve().as_uri())
        assert driver.title == "Leaderboard: example_shapes"
        rows = driver.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")
        assert [row.get_attribute("data-entry") for row in rows] == labels
        assert "clip_list_sha256" in driver.find_element(By.ID, "protocol").text
        videos = driver.find_elements(By.TAG_NAME, "video")
        assert len(videos) == len(labels) * len(board.clips)
        for video in videos:
            state = play(driver, video)
            assert state["error"] is None and state["currentTime"] > 0.1, (video.get_attribute("src"), state)
            assert state["duration"] == pytest.approx(0.48, abs=0.1) and state["width"] == 32
        strips = driver.find_elements(By.CSS_SELECTOR, "img.strip")
        assert len(strips) == len(board.clips)
        assert all(driver.execute_script("return arguments[0].naturalWidth", img) > 0 for img in strips)
        driver.save_screenshot(str(out / "screenshot.png"))
    assert (out / "screenshot.png").stat().st_size > 10_000
