from pathlib import Path

import pytest

from talkingface.cli import main, run_main


def error_of(capsys, argv, entry=main) -> str:
    code = entry(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    return err


def test_help_for_every_command(capsys):
    for argv in (["--help"], ["list", "--help"], ["run", "--help"], ["preprocess", "--help"], ["train", "--help"],
                 ["infer", "--help"], ["evaluate", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
    with pytest.raises(SystemExit) as info:
        run_main(["--help"])
    assert info.value.code == 0
    assert "--key=value" in capsys.readouterr().out


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in ("models:", "datasets:", "metrics:", "audio_features:", "face_backends:"):
        assert kind in out
    assert main(["list", "models"]) == 0
    assert "example_inpainter" in capsys.readouterr().out


def test_unknown_model_and_unknown_key_are_one_line_errors(capsys):
    err = error_of(capsys, ["--model=exampel_inpainter", "--dataset=example_shapes"], run_main)
    assert err.startswith("error: unknown model 'exampel_inpainter'; did you mean 'example_inpainter'")
    assert err.count("\n") == 1
    err = error_of(capsys, ["--model=example", "--dataset=example_shapes", "--train.epohcs=2"], run_main)
    assert "unknown config key 'train.epohcs' in command line; did you mean train.epochs?" in err
    err = error_of(capsys, ["--model=example", "--dataset=example_shapes", "stray"], run_main)
    assert "unexpected argument 'stray'" in err


def test_debug_shows_the_traceback(capsys):
    assert run_main(["--model=nope", "--dataset=example_shapes", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_missing_required_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        run_main(["--model=example"])
    assert info.value.code == 2
    assert "--dataset" in capsys.readouterr().err


def test_infer_with_missing_checkpoint_and_evaluate_misuse(tmp_path: Path, capsys):
    err = error_of(capsys, ["infer", "--model", "example", "--checkpoint", str(tmp_path / "none.pth"),
                            "--video", "v.mp4", "--audio", "a.wav", "--out", str(tmp_path / "o.mp4")])
    assert f"checkpoint {tmp_path / 'none.pth'} not found" in err
    assert not (tmp_path / "o.mp4").exists()
    err = error_of(capsys, ["evaluate", "--model", "example"])
    assert "evaluate needs --videos DIR, or --model, --dataset and --checkpoints" in err
    err = error_of(capsys, ["evaluate", "--videos", str(tmp_path / "nothing")])
    assert "is not a folder of videos" in err
    err = error_of(capsys, ["evaluate", "--model", "example", "--dataset", "example_shapes", "--checkpoints",
                            str(tmp_path / "*.pth")])
    assert "no checkpoint matches" in err


def test_infer_passes_fps_and_face_choice(monkeypatch, capsys):
    import talkingface.pipeline as pipeline
    from talkingface.cli import main

    seen = {}
    monkeypatch.setattr(pipeline, "infer", lambda *args, **kwargs: seen.update(kwargs) or "out.mp4")
    base = ["infer", "--model", "dinet", "--checkpoint", "c.pth", "--video", "v.mp4", "--audio", "a.wav",
            "--out", "o.mp4"]
    assert main(base) == 0 and "fps" not in seen and "face" not in seen
    assert main(base + ["--fps", "25", "--face", "1"]) == 0 and seen["fps"] == 25.0 and seen["face"] == 1
    assert main(base + ["--face", "largest"]) == 0 and seen["face"] == "largest"
    assert main(base + ["--face", "left"]) == 1
    assert "--face must be 'largest' or a face index" in capsys.readouterr().err
