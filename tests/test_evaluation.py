import json
import math
from pathlib import Path

import numpy as np
import pytest

import talkingface
from talkingface.evaluation import Evaluator, Metric, psnr
from talkingface.evaluation.report import results_table
from talkingface.media import VideoWriter, read_frames


def test_psnr_closed_form_and_no_uint8_wraparound():
    a = np.full((4, 4, 3), 100, np.uint8)
    b = np.full((4, 4, 3), 110, np.uint8)
    expected = 10 * math.log10(255**2 / 100)
    assert psnr(a, b) == pytest.approx(expected)
    assert psnr(b, a) == pytest.approx(expected)  # uint8 a - b would wrap to 246
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError):
        psnr(a, b[:2])


def write_video(path: Path, value: int, count: int = 5) -> Path:
    with VideoWriter(path, 25, crf=0, preset="ultrafast") as writer:
        for _ in range(count):
            writer.write(np.full((16, 16, 3), value, np.uint8))
    return path


@talkingface.register_metric("needs_weights_test")
class NeedsWeights(Metric):
    def unavailable(self):
        return "weights.pth not found; see checkpoints/README.md"

    def score(self, generated, reference):
        raise AssertionError("a metric without weights must never score")


def test_evaluator_scores_pairs_and_skips_unavailable_metrics(tmp_path: Path):
    gen = write_video(tmp_path / "gen" / "a.mp4", 100)
    ref = write_video(tmp_path / "ref" / "a.mp4", 110, count=7)  # longer reference: compared over 5
    result = Evaluator(["psnr", "needs_weights_test"], progress=False).evaluate([("a", gen, ref)])
    expected = psnr(read_frames(gen), read_frames(ref)[:5])  # yuv420p shifts grey levels slightly
    assert result.summary["psnr"] == pytest.approx(expected)
    assert 27 < expected < 30
    assert result.skipped == {"needs_weights_test": "skipped (weights.pth not found; see checkpoints/README.md)"}
    assert "needs_weights_test" not in result.summary
    json_path, csv_path = result.save(tmp_path / "out")
    saved = json.loads(json_path.read_text())
    assert saved["videos"][0]["video"] == "a" and "psnr" in saved["videos"][0]
    assert csv_path.read_text().splitlines()[0] == "video,psnr"


def test_evaluate_videos_folder_api(tmp_path: Path, capsys):
    write_video(tmp_path / "gen" / "x.mp4", 50)
    write_video(tmp_path / "ref" / "x.mp4", 50)
    result = talkingface.evaluate_videos(tmp_path / "gen", tmp_path / "ref", ["psnr"], progress=False)
    assert result.summary["psnr"] > 40
    assert "psnr" in capsys.readouterr().out
    with pytest.raises(talkingface.DataError, match="reference .* not found"):
        write_video(tmp_path / "gen" / "y.mp4", 50)
        talkingface.evaluate_videos(tmp_path / "gen", tmp_path / "ref", ["psnr"], progress=False)
    skipped = talkingface.evaluate_videos(tmp_path / "ref", None, ["psnr"], progress=False)
    assert skipped.skipped == {"psnr": "skipped (needs reference videos)"} and skipped.summary == {}


def test_results_table_has_one_row_per_run():
    table = results_table({"ckpt1": {"psnr": 30.123456, "lse": "skipped (syncnet_v2.model not found)"},
                           "ckpt2": {"psnr": math.inf, "lse": "skipped (syncnet_v2.model not found)",
                                     "fid": "skipped (inception missing)"}})
    assert "30.1235" in table and "inf" in table and table.count("ckpt") == 2
    assert table.count("skipped [1]") == 2 and table.count("skipped [2]") == 1
    assert table.endswith("\n[1] syncnet_v2.model not found\n[2] inception missing")


@talkingface.register_metric("counting_test")
class CountingPSNR(Metric):
    """PSNR that counts how often it really scored (to see what a resumed evaluation skips)."""

    calls = 0

    def score(self, generated, reference):
        CountingPSNR.calls += 1
        return {"counted_psnr": psnr(generated.frames, reference.frames), "extra_value": 1.0}


def test_an_interrupted_evaluation_resumes_without_rescoring(tmp_path: Path):
    pairs = [(f"v{i}", write_video(tmp_path / "gen" / f"v{i}.mp4", 40 + i), write_video(tmp_path / "ref" / f"v{i}.mp4", 50))
             for i in range(3)]
    cache = tmp_path / "out" / "rows.jsonl"
    evaluator = Evaluator(["counting_test", "psnr"], progress=False)
    full = evaluator.evaluate(pairs, resume_file=cache)
    assert CountingPSNR.calls == 3
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])  # killed while writing the third row
    CountingPSNR.calls = 0
    resumed = evaluator.evaluate(pairs, resume_file=cache)
    assert CountingPSNR.calls == 1  # only the unfinished video is scored again
    assert resumed.summary == full.summary and resumed.rows == full.rows
    write_video(tmp_path / "gen" / "v0.mp4", 90)  # a regenerated video is scored again
    CountingPSNR.calls = 0
    changed = evaluator.evaluate(pairs, resume_file=cache)
    assert CountingPSNR.calls == 1 and changed.rows[0]["counted_psnr"] != full.rows[0]["counted_psnr"]


def test_metric_options_read_plain_dicts_and_configs_alike():
    from talkingface.evaluation.fid.metric import FIDMetric

    assert FIDMetric({"evaluate": {"fid_frame_stride": 3}}).frame_stride == 3
    assert FIDMetric(talkingface.load_config(config={"evaluate": {"fid_frame_stride": 2}})).frame_stride == 2
    assert FIDMetric(None).frame_stride == 1
    metric = CountingPSNR({"evaluate": {"ssim_preset": None}})
    assert metric.option("evaluate.ssim_preset", "skimage") == "skimage"  # null means the default
    assert metric.option("evaluate.missing.deeper", 7) == 7


def test_changed_evaluation_settings_are_not_served_from_the_cache(tmp_path: Path):
    pairs = [("v", write_video(tmp_path / "gen" / "v.mp4", 40), write_video(tmp_path / "ref" / "v.mp4", 50))]
    cache = tmp_path / "rows.jsonl"
    CountingPSNR.calls = 0
    Evaluator(["counting_test"], {"evaluate": {"region": "full"}}, progress=False).evaluate(pairs, cache)
    Evaluator(["counting_test"], {"evaluate": {"region": "full"}}, progress=False).evaluate(pairs, cache)
    assert CountingPSNR.calls == 1
    Evaluator(["counting_test"], {"evaluate": {"region": "face"}}, progress=False).evaluate(pairs, cache)
    assert CountingPSNR.calls == 2


def test_evaluate_videos_takes_its_options_from_the_config(tmp_path: Path):
    rng = np.random.default_rng(0)
    for folder, noise in (("gen", 30), ("ref", 0)):
        with VideoWriter(tmp_path / folder / "x.mp4", 25, crf=0, preset="ultrafast") as writer:
            for frame in np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8):
                writer.write(np.clip(frame.astype(int) + rng.integers(-noise, noise + 1, frame.shape), 0, 255)
                             .astype(np.uint8))
    default = talkingface.evaluate_videos(tmp_path / "gen", tmp_path / "ref", ["ssim"], progress=False,
                                          output=tmp_path / "a")
    talklip = talkingface.evaluate_videos(tmp_path / "gen", tmp_path / "ref", ["ssim"], progress=False,
                                          output=tmp_path / "b", cli_overrides={"evaluate": {"ssim_preset": "talklip"}})
    assert default.summary["ssim"] != pytest.approx(talklip.summary["ssim"], abs=1e-3)
    # no --metrics: the config's evaluate.metrics, with weights-less metrics skipped and none invented
    everything = talkingface.evaluate_videos(tmp_path / "gen", tmp_path / "ref", progress=False, output=tmp_path / "c",
                                             cli_overrides={"evaluate": {"syncnet_weights": str(tmp_path / "no.model"),
                                                                         "inception_weights": str(tmp_path / "no.pth")}})
    assert set(everything.summary) == {"ssim", "psnr"} and set(everything.skipped) == {"lse", "fid"}
