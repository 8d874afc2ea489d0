"""Multi-stage recipes: stages in order, per-stage overrides, weights handed on, one stage, resume."""
from pathlib import Path

import pytest
import torch
from torch import nn

import talkingface
from talkingface import TalkingFaceModel
from talkingface.errors import ConfigError
from talkingface.pipeline import final_weights, resumed_run_dir, train


class Points(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {"x": torch.tensor([float(i)]), "y": torch.tensor([2.0 * i + 1])}


@talkingface.register_model("two_stage_test")
class TwoStages(TalkingFaceModel):
    """Stage ``a`` fits the weight, stage ``b`` the bias; each records what it was handed."""

    default_config = {"two_stage_test": {"steps": {"a": 3, "b": 2}}}
    entered: list = []

    def __init__(self, config=None):
        super().__init__(config)
        self.net = nn.Linear(1, 1)
        self.stage = "a"

    def recipe(self):
        return ["a", "b"]

    def enter_stage(self, stage, previous):
        TwoStages.entered.append((stage, previous))
        if previous is not None:
            self.load_checkpoint(previous)
        self.stage = stage
        return {"train": {"max_steps": self.config["two_stage_test"]["steps"][stage]}}

    def configure_optimizers(self):
        params = [self.net.weight] if self.stage == "a" else [self.net.bias]
        return {"optimizers": {"net": torch.optim.SGD(params, lr=1e-3)}, "schedulers": {}}

    def build_dataset(self, store, split):
        return Points() if split == "train" else None

    def training_step(self, batch, step):
        loss = ((self.net(batch["x"]) - batch["y"]) ** 2).mean()
        self.backward(loss)
        self.optimizer_step(self.optimizers["net"])
        return {"loss": loss.item()}

    def generate(self, source_video, audio, output, **options):
        raise talkingface.TalkingFaceError("not used in these tests")


class TrainOnly:
    """A store stand-in with a train split only."""

    def split_names(self, split):
        return ["x"] if split == "train" else []


def config(tmp_path: Path, **extra):
    return talkingface.load_config("two_stage_test", config={"progress": False, "saved_dir": str(tmp_path),
                                                             "train": {"batch_size": 2}, **extra})


def test_stages_run_in_order_with_their_overrides_and_hand_on_their_weights(tmp_path):
    TwoStages.entered = []
    model = TwoStages(config(tmp_path))
    start = model.net.weight.detach().clone(), model.net.bias.detach().clone()
    results = train(model, TrainOnly(), model.config, tmp_path / "run")
    assert [s for s, _ in TwoStages.entered] == ["a", "b"]
    assert TwoStages.entered[0][1] is None
    assert TwoStages.entered[1][1] == final_weights(tmp_path / "run" / "stages" / "0-a")
    assert TwoStages.entered[1][1].name == "best.pth"  # validation (here: the train loss) picked one
    assert results["a"]["step"] == 3 and results["b"]["step"] == 2
    assert (tmp_path / "run" / "stages" / "1-b" / "stage.json").exists()
    # stage a moved only the weight, stage b only the bias, and the model ends with both
    a = torch.load(final_weights(tmp_path / "run" / "stages" / "0-a"), weights_only=True)["state_dict"]
    b = torch.load(final_weights(tmp_path / "run" / "stages" / "1-b"), weights_only=True)["state_dict"]
    assert a["net.bias"].equal(start[1]) and not a["net.weight"].equal(start[0])
    assert b["net.weight"].equal(a["net.weight"]) and not b["net.bias"].equal(start[1])
    assert model.net.bias.detach().equal(b["net.bias"])  # the model ends with the last stage's final weights


def test_one_stage_from_given_weights_and_bad_stage_names(tmp_path):
    TwoStages.entered = []
    first = TwoStages(config(tmp_path))
    train(first, TrainOnly(), first.config, tmp_path / "run")
    weights = final_weights(tmp_path / "run" / "stages" / "0-a")
    TwoStages.entered = []
    only_b = TwoStages(config(tmp_path, stage="b", train={"batch_size": 2, "init_from": str(weights)}))
    results = train(only_b, TrainOnly(), only_b.config, tmp_path / "single")
    assert list(results) == ["b"] and TwoStages.entered == [("b", weights)]
    assert not (tmp_path / "single" / "stages" / "0-a").exists()
    with pytest.raises(ConfigError, match="'c' is not a stage of 'two_stage_test'; its stages are a, b"):
        train(TwoStages(config(tmp_path, stage="c")), TrainOnly(), config(tmp_path, stage="c"), tmp_path / "bad")


def test_a_resumed_recipe_skips_finished_stages_and_resumes_the_open_one(tmp_path):
    model = TwoStages(config(tmp_path))
    train(model, TrainOnly(), model.config, tmp_path / "run")
    stage_b = tmp_path / "run" / "stages" / "1-b"
    (stage_b / "stage.json").unlink()  # as if killed before stage b was recorded as finished
    last = stage_b / "checkpoints" / "last.pth"
    assert resumed_run_dir(last) == (tmp_path / "run").resolve()
    assert resumed_run_dir(tmp_path / "run") == (tmp_path / "run").resolve()
    TwoStages.entered = []
    again = TwoStages(config(tmp_path, train={"batch_size": 2, "resume": str(last)}))
    results = train(again, TrainOnly(), again.config, tmp_path / "run")
    assert [s for s, _ in TwoStages.entered] == ["b"]  # stage a was not trained again
    assert results["b"]["step"] == 2 and (stage_b / "stage.json").exists()
    assert again.net.bias.detach().equal(model.net.bias.detach())


def test_single_stage_models_refuse_a_stage(tiny, tmp_path):
    from talkingface.pipeline import build_model

    cfg = talkingface.load_config("example_inpainter", "example_shapes", config=tiny(stage="frame64"))
    with pytest.raises(ConfigError, match="has no training stages"):
        train(build_model("example_inpainter", cfg), TrainOnly(), cfg, tmp_path / "run")
