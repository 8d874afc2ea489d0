from pathlib import Path

import pytest
import yaml

import talkingface
from talkingface.config import Config, load_config, parse_cli_overrides
from talkingface.errors import ConfigError


def test_cli_values_are_yaml_typed_and_never_evaluated():
    parsed = parse_cli_overrides(["--seed=7", "--train.amp=false", "--evaluate.metrics=[psnr, ssim]",
                                  "--device", "cpu", "--train.max_steps=1e3", "--name=__import__('os')"])
    assert parsed["seed"] == 7
    assert parsed["train"] == {"amp": False, "max_steps": 1e3}
    assert parsed["evaluate"]["metrics"] == ["psnr", "ssim"]
    assert parsed["device"] == "cpu"
    assert parsed["name"] == "__import__('os')"  # a plain string, not code


def test_cli_rejects_positional_tokens():
    with pytest.raises(ConfigError, match="unexpected argument 'stray'"):
        parse_cli_overrides(["stray"])


def test_precedence_files_then_dict_then_cli(tmp_path: Path):
    first = tmp_path / "a.yaml"
    second = tmp_path / "b.yaml"
    first.write_text("seed: 1\ntrain: {batch_size: 3, epochs: 5}\n")
    second.write_text("seed: 2\n")
    config = load_config("example_inpainter", "example_shapes", [first, second],
                         config={"train": {"epochs": 6}, "device": "cpu"},
                         cli_overrides={"device": "auto", "example_inpainter": {"lr": 0.5}})
    assert config["seed"] == 2                    # later file wins
    assert config["train.batch_size"] == 3        # first file, untouched by later layers
    assert config["train.epochs"] == 6            # dict beats files
    assert config["device"] == "auto"             # CLI beats dict
    assert config["example_inpainter.lr"] == 0.5  # CLI beats model defaults
    assert config["example_inpainter.channels"] == 32
    assert config["example_shapes.clips"] == 8    # dataset defaults layered in
    assert config["model"] == "example_inpainter" and config["dataset"] == "example_shapes"
    assert str(first) in config["config_sources"] and "command line" in config["config_sources"]


def test_builtin_yaml_layers_override_plugin_defaults(tmp_path, monkeypatch):
    root = tmp_path / "configs"
    (root / "model" / "example_inpainter").mkdir(parents=True)
    (root / "dataset").mkdir()
    (root / "overall.yaml").write_text("seed: 1\ntrain: {epochs: 1}\n")
    (root / "model" / "example_inpainter.yaml").write_text("seed: 2\n")
    (root / "dataset" / "example_shapes.yaml").write_text("seed: 3\ntrain: {epochs: 4}\n")
    (root / "model" / "example_inpainter" / "example_shapes.yaml").write_text("seed: 5\n")
    monkeypatch.setattr(talkingface.config, "config_root", lambda: root)
    config = load_config("example_inpainter", "example_shapes")
    assert config["seed"] == 5 and config["train.epochs"] == 4
    assert load_config("example_inpainter")["seed"] == 2
    assert load_config(dataset="example_shapes")["seed"] == 3


def test_unknown_keys_fail_with_a_suggestion(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"unknown config key 'train.bach_size' in command line; did you mean "
                                          r"train.batch_size"):
        load_config(cli_overrides={"train": {"bach_size": 2}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("evaluate: {metrix: [psnr]}\n")
    with pytest.raises(ConfigError, match=f"unknown config key 'evaluate.metrix' in {bad}"):
        load_config(config_files=[bad])


def test_wrong_types_and_bad_files_are_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="'train.batch_size' in config dict expects int"):
        load_config(config={"train": {"batch_size": "eight"}})
    with pytest.raises(ConfigError, match="expects bool"):
        load_config(config={"train": {"amp": 1}})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(config_files=[tmp_path / "missing.yaml"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(config_files=[broken])
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must contain a mapping"):
        load_config(config_files=[listing])


def test_missing_keys_raise_instead_of_returning_none():
    config = load_config()
    with pytest.raises(ConfigError, match="did you mean seed"):
        config["sed"]
    with pytest.raises(ConfigError):
        config.train.epoch
    assert config.get("sed", "fallback") == "fallback"
    assert config.train.epochs == config["train"]["epochs"] == config["train.epochs"]
    with pytest.raises(AttributeError):
        config.seed = 3


def test_updated_and_saved_config_roundtrip(tmp_path: Path):
    config = load_config("example_inpainter").updated({"train": {"max_steps": 4}})
    assert config["train.max_steps"] == 4
    with pytest.raises(ConfigError):
        config.updated({"nope": 1})
    path = config.save(tmp_path / "config.yaml")
    assert yaml.safe_load(path.read_text()) == config.to_dict()
    assert Config(yaml.safe_load(path.read_text()))["example_inpainter.channels"] == 32


def test_membership_answers_instead_of_raising():
    config = load_config()
    assert "train" in config and "nope" not in config and "epochs" in config.train
