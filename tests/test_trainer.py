import csv
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

import talkingface
from helpers import cli_tokens, only_run_dir, run_cli, weights
from talkingface.io_utils import atomic_write
from talkingface_example import ExampleInpainter


def train_only(tiny, tmp: Path, name: str, model: str = "example", extra: dict | None = None, **train) -> Path:
    """Train in-process into ``tmp/name`` and return the run folder."""
    config = tiny(saved_dir=str(tmp / name), evaluate={"enabled": False}, train=train, **(extra or {}))
    result = talkingface.run(model, "example_shapes", config=config)
    return Path(result["run_dir"])


def assert_same_weights(a: dict, b: dict, atol: float = 0.0):
    assert a.keys() == b.keys()
    for key in a:
        if atol:
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=1e-4, msg=key)
        else:
            assert torch.equal(a[key], b[key]), key


def test_kill_and_resume_gives_the_same_weights_as_a_straight_run(tiny, tmp_path: Path):
    train = {"max_steps": 12, "checkpoint_every_steps": 6, "accumulate_grad_batches": 2, "batch_size": 2}
    plugin = {"plugins": ["talkingface_example", "killer_plugin"]}
    straight = train_only(tiny, tmp_path, "straight", model="example_killed", extra=plugin, **train)

    config = tiny(saved_dir=str(tmp_path / "killed"), evaluate={"enabled": False}, train=train,
                  kill_at_step=7, **plugin)
    killed = run_cli(["--model=example_killed", "--dataset=example_shapes", *cli_tokens(config)])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_dir = only_run_dir(tmp_path / "killed")
    last = run_dir / "checkpoints" / "last.pth"
    assert torch.load(last, weights_only=True)["loop"]["step"] == 6
    assert not list(run_dir.glob("checkpoints/.*")), "no temporary checkpoint files left behind"

    resumed = talkingface.run("example_killed", "example_shapes",
                              config=tiny(saved_dir=str(tmp_path / "killed"), evaluate={"enabled": False},
                                          train={**train, "resume": str(last)}, **plugin))
    assert Path(resumed["run_dir"]) == run_dir  # continues in the interrupted run's folder
    assert resumed["train"]["step"] == 12 and resumed["train"]["epoch"] == 1
    assert_same_weights(weights(straight / "checkpoints" / "last.pth"), weights(last))

    def losses(folder: Path):
        with open(folder / "scalars.csv") as handle:
            return [(r["step"], r["value"]) for r in csv.DictReader(handle) if r["name"] == "train/loss"]

    assert losses(straight) == losses(run_dir)  # the scalar log was cut back to step 6, then continued


@pytest.mark.numerics
def test_gradient_accumulation_matches_a_larger_batch(tiny, tmp_path: Path):
    big = train_only(tiny, tmp_path, "big", max_steps=3, batch_size=4)
    accumulated = train_only(tiny, tmp_path, "acc", max_steps=3, batch_size=2, accumulate_grad_batches=2)
    assert_same_weights(weights(big / "checkpoints" / "last.pth"), weights(accumulated / "checkpoints" / "last.pth"),
                        atol=1e-5)


@pytest.mark.slow
def test_torchrun_two_gloo_processes_match_one_process_with_twice_the_batch(tiny, tmp_path: Path):
    single = train_only(tiny, tmp_path, "single", max_steps=3, batch_size=4)
    config = tiny(saved_dir=str(tmp_path / "ddp"), evaluate={"enabled": False},
                  train={"max_steps": 3, "batch_size": 2, "distributed_backend": "gloo"}, device="cpu")
    result = run_cli(["--standalone", "--nproc_per_node=2", str(Path(talkingface.__file__).parents[1] /
                                                                   "run_talkingface.py"),
                      "--model=example", "--dataset=example_shapes", *cli_tokens(config)],
                     module="torch.distributed.run", threads=1)
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = only_run_dir(tmp_path / "ddp")
    assert_same_weights(weights(single / "checkpoints" / "last.pth"), weights(ddp / "checkpoints" / "last.pth"),
                        atol=1e-5)
    assert (ddp / "loss.png").is_file()


def test_run_folder_has_checkpoints_logs_and_plot(tiny, tmp_path: Path):
    run_dir = train_only(tiny, tmp_path, "r", epochs=2)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pth", weights_only=True)
    best = torch.load(run_dir / "checkpoints" / "best.pth", weights_only=True)
    assert checkpoint["loop"]["epoch"] == 2 and checkpoint["loop"]["step"] == 18  # 36 samples / 4 per batch x 2
    assert set(checkpoint) >= {"state_dict", "optimizers", "schedulers", "scaler", "rng", "config", "loop"}
    rows = list(csv.DictReader(open(run_dir / "scalars.csv")))
    val = [float(r["value"]) for r in rows if r["name"] == "val/loss"]
    assert len(val) == 2  # validated at the end of each epoch
    assert best["loop"]["best"] == pytest.approx(min(val), rel=1e-5)
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "config.yaml").is_file() and (run_dir / "run.log").is_file()


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path):
    target = tmp_path / "last.pth"
    target.write_bytes(b"old")

    def failing(tmp: Path):
        tmp.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["last.pth"]
    atomic_write(target, lambda tmp: tmp.write_bytes(b"new"))
    reference = tmp_path / "plain"
    reference.write_bytes(b"")
    assert target.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777  # not mkstemp's 0600


@talkingface.register_model("example_nan")
class DivergingInpainter(ExampleInpainter):
    def training_step(self, batch, step):
        logs = super().training_step(batch, step)
        return {**logs, "loss": float("nan") if step >= 1 else logs["loss"]}


def test_non_finite_loss_stops_training(tiny, tmp_path: Path):
    with pytest.raises(FloatingPointError, match="non-finite training losses: train/loss"):
        train_only(tiny, tmp_path, "nan", model="example_nan", max_steps=3)


def _average_in_process(rank: int, port: int, results) -> None:
    import torch.distributed as dist

    from talkingface.training.optimization import average_gradients

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        used, partial, unused = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
        used.grad = torch.full((3,), float(rank + 1))  # 1 and 2: mean 1.5
        if rank == 0:
            partial.grad = torch.full((3,), 4.0)  # missing in rank 1: counts as zero, mean 2
        average_gradients([used, partial, unused])
        results[rank] = (used.grad.tolist(), partial.grad.tolist(), unused.grad)
    finally:
        dist.destroy_process_group()


def test_gradient_averaging_leaves_parameters_outside_every_graph_without_a_gradient():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = mp.get_context("spawn").Manager().dict()  # not forked from a worker with other libraries' threads
    mp.spawn(_average_in_process, args=(port, results), nprocs=2)
    for rank in (0, 1):
        used, partial, unused = results[rank]
        assert used == [1.5] * 3 and partial == [2.0] * 3 and unused is None  # unused: skipped, as one process
