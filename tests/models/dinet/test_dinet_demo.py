"""The demo main job's path (``run_talkingface.py --model=dinet --dataset=demo``) on a tiny budget: the pair
config is applied, the one-stage recipe trains, the test clip is dubbed with its own and with shifted audio,
and the table, strips and results are written. The full-length job and its numbers: docs/dinet_demo.md."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import talkingface


def test_demo_pair_config_is_layered_over_the_dinet_defaults():
    config = talkingface.load_config("dinet", "demo")
    assert config["config_sources"][-1].endswith("configs/model/dinet/demo.yaml")
    assert list(config["dinet"]["recipe"]) == ["frame64"]
    assert config["dinet"]["stages"]["frame64"]["batch_size"] == 4
    assert config["dinet"]["stages"]["frame64"]["augment_num"] == 32  # the rest of the stage stays official
    assert config["evaluate"]["control_audio_shift"] == 1.5 and "mouth_sync" in config["evaluate"]["metrics"]
    hdtf = talkingface.load_config("dinet", "hdtf")  # other datasets keep the official recipe
    assert list(hdtf["dinet"]["recipe"]) == ["syncnet", "frame64", "frame128", "frame256", "clip"]
    assert hdtf["dinet"]["lr"] == 1e-4 and hdtf["evaluate"]["control_audio_shift"] is None


@pytest.mark.slow
def test_demo_main_job_writes_the_table_the_control_row_and_the_strip(tiny, tmp_path: Path, capsys):
    config = tiny(example=False, demo={"clips": 3}, train={"max_steps": 2, "log_every_steps": 1},
                  evaluate={"strip_frames": 4})
    result = talkingface.run("dinet", "demo", config=config)
    run_dir = Path(result["run_dir"])
    assert (run_dir / "stages" / "0-frame64" / "stage.json").is_file()
    assert result["train"]["frame64"]["step"] == 2
    table = capsys.readouterr().out
    assert "dinet on demo" in table and "dinet on demo (audio shifted 1.5 s)" in table
    assert set(result["skipped"]) == {"lse", "fid"}  # no weights here: named, never a number
    assert not {"lse_c", "lse_d", "fid"} & set(result["evaluate"])
    assert {"ssim", "psnr"} <= set(result["evaluate"])
    # After two steps the mouth may be noise: mouth_sync is a correlation, or NaN with the video counted
    # as skipped (dlib found no usable mouth), never an invented number.
    for scores in (result["evaluate"], result["control"]["evaluate"]):
        if "mouth_sync_skipped" in scores:
            assert scores["mouth_sync_skipped"] == 1.0 and math.isnan(scores["mouth_sync"])
        else:
            assert -1.0 <= scores["mouth_sync"] <= 1.0
    assert math.isfinite(result["evaluate"]["ssim"]) and math.isfinite(result["evaluate"]["psnr"])
    assert result["control"]["audio_shift"] == 1.5 and set(result["control"]["skipped"]) == set()
    evaluation = run_dir / "evaluation"
    test_clip = (tmp_path / "processed" / "demo" / "splits" / "test.txt").read_text().split()[0]
    for name in (f"generated/{test_clip}.mp4", f"control/generated/{test_clip}.mp4", f"control/audio/{test_clip}.wav",
                 "metrics.json", "control/metrics.json"):
        assert (evaluation / name).is_file(), name
    strip = np.asarray(Image.open(evaluation / "strips" / f"{test_clip}.png"))
    assert strip.shape[0] == 3 * 256  # generated, control, ground truth
    assert json.loads((run_dir / "results.json").read_text())["strips"] == [str(evaluation / "strips" / f"{test_clip}.png")]
