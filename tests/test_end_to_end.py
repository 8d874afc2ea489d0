"""The whole recipe through the Python API and the CLI, then inference and batch evaluation."""
import json
from pathlib import Path

import pytest

import talkingface
from helpers import cli_tokens, only_run_dir, run_cli
from talkingface.cli import main
from talkingface.media import probe_video


@pytest.mark.slow
def test_python_api_and_cli_produce_the_same_results(tiny, tmp_path: Path, capsys):
    config = tiny(saved_dir=str(tmp_path / "api"), train={"max_steps": 4})
    result = talkingface.run("example_inpainter", "example_shapes", config=config)
    run_dir = Path(result["run_dir"])
    assert result["train"]["step"] == 4
    assert result["evaluate"]["psnr"] > 5 and 0 < result["evaluate"]["ssim"] <= 1
    missing = tmp_path / "no-weights"
    assert result["skipped"] == {
        "lse": f"skipped (syncnet_v2.model not found at {missing / 'syncnet_v2.model'}; see checkpoints/README.md)",
        "fid": f"skipped (pt_inception-2015-12-05-6726825d.pth not found at "
               f"{missing / 'pt_inception-2015-12-05-6726825d.pth'}; see checkpoints/README.md)"}
    assert not {"lse_c", "lse_d", "fid"} & set(result["evaluate"])  # never a number without weights
    for name in ("config.yaml", "results.json", "run.log", "scalars.csv", "loss.png", "checkpoints/last.pth",
                 "checkpoints/best.pth", "evaluation/metrics.json", "evaluation/metrics.csv"):
        assert (run_dir / name).is_file(), name
    assert "example_inpainter on example_shapes" in capsys.readouterr().out
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["evaluate"] == result["evaluate"]

    cli_config = tiny(saved_dir=str(tmp_path / "cli"), train={"max_steps": 4})
    completed = run_cli(["--model=example_inpainter", "--dataset=example_shapes", *cli_tokens(cli_config)])
    assert completed.returncode == 0, completed.stderr[-2000:]
    cli_results = json.loads((only_run_dir(tmp_path / "cli") / "results.json").read_text())
    assert cli_results["evaluate"] == pytest.approx(result["evaluate"])

    # Inference with the trained checkpoint, then batch evaluation of two checkpoints.
    clip = next((tmp_path / "processed" / "example_shapes" / "clips").iterdir())
    out = tmp_path / "dubbed.mp4"
    overrides = cli_tokens({"progress": False, "example_inpainter": {"channels": 8}})
    assert main(["infer", "--model", "example", "--checkpoint", str(run_dir / "checkpoints" / "last.pth"),
                 "--video", str(clip / "video.mp4"), "--audio", str(clip / "audio.wav"), "--out", str(out),
                 *overrides]) == 0
    assert probe_video(out).has_audio
    code = main(["evaluate", "--model", "example", "--dataset", "example_shapes", "--checkpoints",
                 str(tmp_path / "**" / "last.pth"), *cli_tokens(tiny(saved_dir=str(tmp_path / "eval")))])
    assert code == 0
    table = capsys.readouterr().out
    assert table.count("last.pth") == 2
    comparison = json.loads((only_run_dir(tmp_path / "eval") / "comparison.json").read_text())
    assert len(comparison) == 2 and all("psnr" in row for row in comparison.values())


def test_preprocess_is_idempotent_and_rebuilds_when_settings_change(tmp_path: Path, tiny):
    def dataset_only(**extra):  # without the model's keys: preprocess knows only the dataset's
        config = tiny(**extra)
        config.pop("example_inpainter")
        return config

    store = talkingface.preprocess("example_shapes", dataset_only())
    clips = sorted(p.name for p in (store.root / "clips").iterdir())
    stamp = (store.root / "clips" / clips[0] / "video.mp4").stat().st_mtime_ns
    assert talkingface.preprocess("example_shapes", dataset_only()).root == store.root
    assert (store.root / "clips" / clips[0] / "video.mp4").stat().st_mtime_ns == stamp  # reused
    (store.root / "clips" / clips[1] / "meta.json").unlink()  # an interrupted clip is redone
    (store.root / "store.json").write_text(json.dumps({**json.loads((store.root / "store.json").read_text()),
                                                       "complete": False}))
    talkingface.preprocess("example_shapes", dataset_only())
    assert (store.root / "clips" / clips[1] / "meta.json").is_file()
    assert (store.root / "clips" / clips[0] / "video.mp4").stat().st_mtime_ns == stamp
    bigger = dataset_only(example_shapes={"size": 48})
    talkingface.preprocess("example_shapes", bigger)
    assert probe_video(store.root / "clips" / clips[0] / "video.mp4").width == 48
