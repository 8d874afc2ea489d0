"""Adding a model is one folder and one YAML (docs/architecture.md, "Adding a model").

A temporary copy of the package gets ``talkingface/models/tinyfold/`` and ``talkingface/configs/model/
tinyfold.yaml`` and nothing else; through the CLI the new model is listed, shows its generate option in
``infer --help``, trains a step, dubs and is evaluated.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, TINY_EXAMPLE, subprocess_env, tiny_overrides
from helpers import cli_tokens

MODEL = '''
"""tinyfold: one convolution that learns to redraw the frame (a plugin folder made by a test)."""
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ...dubbing import GenerateOption
from ...media import VideoWriter, read_audio, read_frames
from ...registry import register_model
from ..base import TalkingFaceModel


class Frames(Dataset):
    def __init__(self, store, split):
        self.frames = np.concatenate([read_frames(clip.video_path) for clip in store.split(split)])

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, i):
        return torch.from_numpy(self.frames[i]).permute(2, 0, 1).float() / 255.0


@register_model("tinyfold")
class TinyFold(TalkingFaceModel):
    default_dataset = "example_shapes"
    generate_options = (GenerateOption("gain", "brightness gain of the output", float),)

    def __init__(self, config=None):
        super().__init__(config)
        self.net = torch.nn.Conv2d(3, 3, 3, padding=1)

    def configure_optimizers(self):
        return {"optimizers": {"net": torch.optim.Adam(self.parameters(), lr=float(self.config["tinyfold"]["lr"]))},
                "schedulers": {}}

    def build_dataset(self, store, split):
        return Frames(store, split)

    def training_step(self, batch, step):
        loss = F.l1_loss(torch.sigmoid(self.net(batch)), batch)
        self.backward(loss)
        self.optimizer_step(self.optimizers["net"])
        return {"loss": loss.item()}

    def generate(self, source_video, audio, output, gain=1.0, **options):
        wav = read_audio(audio, 16000)
        with VideoWriter(output, 25, audio=wav) as writer, torch.no_grad():
            for frame in read_frames(source_video):
                x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255.0
                y = (torch.sigmoid(self.net(x)) * gain).clamp(0, 1)[0].permute(1, 2, 0)
                writer.write((y * 255).round().byte().numpy())
        return Path(output)
'''


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("copy")
    shutil.copytree(REPO / "talkingface", root / "talkingface", ignore=shutil.ignore_patterns("__pycache__"))
    folder = root / "talkingface" / "models" / "tinyfold"
    folder.mkdir()
    (folder / "__init__.py").write_text("from . import model  # noqa: F401  (registers tinyfold)\n")
    (folder / "model.py").write_text(textwrap.dedent(MODEL))
    (root / "talkingface" / "configs" / "model" / "tinyfold.yaml").write_text("tinyfold:\n  lr: 0.01\n")
    return root


def cli(copy: Path, *args: str) -> subprocess.CompletedProcess:
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(copy), env["PYTHONPATH"]])  # the copy shadows the installed package
    return subprocess.run([sys.executable, "-m", "talkingface.cli", *args], capture_output=True, text=True,
                          env=env, cwd=copy, timeout=300)


@pytest.mark.slow
def test_a_model_folder_and_its_yaml_are_all_it_takes(package_copy: Path, tmp_path: Path):
    listing = cli(package_copy, "list", "models")
    assert listing.returncode == 0 and "tinyfold" in listing.stdout, listing.stderr
    assert "tinyfold" not in subprocess.run([sys.executable, "-m", "talkingface.cli", "list", "models"],
                                            capture_output=True, text=True, env=subprocess_env()).stdout
    usage = cli(package_copy, "infer", "--model", "tinyfold", "--help")
    assert usage.returncode == 0 and "--gain" in usage.stdout and "brightness gain" in usage.stdout

    overrides = tiny_overrides(tmp_path, example=False, example_shapes=TINY_EXAMPLE["example_shapes"],
                               train={"max_steps": 1, "batch_size": 2}, evaluate={"metrics": ["psnr"]})
    trained = cli(package_copy, "train", "--model", "tinyfold", "--dataset", "example_shapes", *cli_tokens(overrides))
    assert trained.returncode == 0, trained.stderr
    checkpoint = next((tmp_path / "saved").glob("tinyfold-example_shapes-*/checkpoints/last.pth"))
    clip = next((tmp_path / "processed").glob("example_shapes/**/*.mp4"))
    common = cli_tokens({k: overrides[k] for k in ("plugins", "progress")})
    dubbed = cli(package_copy, "infer", "--model", "tinyfold", "--checkpoint", str(checkpoint), "--video", str(clip),
                 "--audio", str(clip), "--out", str(tmp_path / "out.mp4"), "--gain", "1.5", *common)
    assert dubbed.returncode == 0 and (tmp_path / "out.mp4").is_file(), dubbed.stderr
    bad = cli(package_copy, "infer", "--model", "tinyfold", "--checkpoint", str(checkpoint), "--video", str(clip),
              "--audio", str(clip), "--out", str(tmp_path / "bad.mp4"), "--gain", "loud", *common)
    assert bad.returncode == 1 and "--gain" in bad.stderr and not (tmp_path / "bad.mp4").exists()

    scored = cli(package_copy, "evaluate", "--model", "tinyfold", "--dataset", "example_shapes",
                 "--checkpoints", str(checkpoint), *cli_tokens(overrides))
    assert scored.returncode == 0, scored.stderr
    row = next(line for line in scored.stdout.splitlines() if str(checkpoint) in line)
    assert float(row.split("|")[2]) > 5  # a PSNR in dB of the dubbed test clip against its ground truth
