"""Every command in the README's and docs' code blocks works in the default install (issue 22).

The commands are read from the Markdown files, so a doc and the code cannot drift apart. Each one is
parsed exactly as the CLI parses it (subcommand, arguments, ``--key=value`` overrides and the config keys); its
model and dataset must be registered names unless the doc writes a metavariable of ``PLACEHOLDERS``. Those that
run on tiny fixtures run for real in a child process where the optional extras cannot be imported
(``core_env``), as after ``bash scripts/demo.sh``.
"""
from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, subprocess_env
from talkingface.audio.deepspeech import DeepSpeechNet
from talkingface.cli import _infer_model, main_parser, run_parser
from talkingface.config import load_config, parse_cli_overrides
from talkingface.errors import ConfigError, RegistryError
from talkingface.optional import MissingDependencyError, require
from talkingface.registry import DATASETS, MODELS

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# import names of the optional extras and the test tools: what a default install does not have
NOT_CORE = ("scenedetect", "face_alignment", "cv2", "python_speech_features", "pytest", "_pytest", "xdist",
            "importlinter", "grimp", "pkg_resources", "fastapi", "uvicorn", "multipart", "starlette")
DEEPSPEECH_GRAPH = REPO / "tests" / "fixtures" / "deepspeech" / "tiny_graph.pb"


def commands_in(markdown: str) -> list[str]:
    """Each ``talkingface …`` / ``python run_talkingface.py …`` / ``torchrun …`` line of a fenced code block."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", markdown, re.S):
        for line in block.replace("\\\n", " ").splitlines():  # continuation lines joined
            line = line.strip().removeprefix("$ ")
            if line.startswith(("talkingface ", "python run_talkingface.py", "torchrun ")):
                found.append(line)
    return found


def documented_commands() -> list[tuple[str, str]]:
    """``(file, command)`` for each command of the README's and docs' code blocks."""
    return [(path.name, command) for path in DOCS for command in commands_in(path.read_text())]


COMMANDS = documented_commands()


def arguments(command: str) -> tuple[str, list[str]]:
    """``("talkingface" | "run", argv)`` of a documented command line (comments dropped)."""
    tokens = shlex.split(command, comments=True)
    if tokens[0] == "talkingface":
        return "talkingface", tokens[1:]
    return "run", tokens[tokens.index("run_talkingface.py") + 1:]


def test_the_docs_hold_commands():
    assert len(COMMANDS) >= 15 and {"README.md", "dinet_demo.md"} <= {name for name, _ in COMMANDS}


# The metavariables the docs write where a command takes any model or dataset (README: ``--model M --dataset D``,
# ``--model=<model>``). Any other value must be a registered name: a misspelled model in the docs fails.
PLACEHOLDERS = {"model": {"M", "<model>", "all"}, "dataset": {"D", "<dataset>"}}  # all: `benchmark --model all`


def named(argv: list[str], kind: str) -> str | None:
    """The ``--model`` / ``--dataset`` of a command line (also before ``--help``), None where it names a
    metavariable of ``PLACEHOLDERS``; an unknown name raises RegistryError (did-you-mean and the registered
    names)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument(f"--{kind}", f"-{kind[0]}")
    value = getattr(pre.parse_known_args(argv)[0], kind)
    if value is None or value in PLACEHOLDERS[kind]:
        return None
    return {"model": MODELS, "dataset": DATASETS}[kind].canonical(value)


def check_command(command: str) -> None:
    """Parse ``command`` as the CLI does; its model and dataset must be registered (or metavariables) and its
    ``--key=value`` overrides must be config keys whose values type-check."""
    program, argv = arguments(command)
    model, dataset = named(argv, "model"), named(argv, "dataset")
    parser = main_parser(_infer_model(argv)) if program == "talkingface" else run_parser()
    if "--help" in argv:
        with pytest.raises(SystemExit) as done:
            parser.parse_known_args(argv)
        assert done.value.code == 0
        return
    _, extra = parser.parse_known_args(argv)
    load_config(model, dataset, cli_overrides=parse_cli_overrides(extra))  # the keys exist and the values type-check


@pytest.mark.parametrize("source,command", COMMANDS, ids=[f"{n}:{c[:60]}" for n, c in COMMANDS])
def test_each_documented_command_parses(source, command):
    check_command(command)


MISSPELLED = """
```bash
python run_talkingface.py --model=dinte --dataset=demo
talkingface train --model lawdnet --dataset dmeo
talkingface infer --model lawdnett --help
talkingface serve -m dinet_ --checkpoint X.pth --video template.mp4
talkingface preprocess --dataset hdtff
python run_talkingface.py --model=M --dataset=D --train.max_stepz=500
talkingface infer --model <modle> --checkpoint X.pth --video in.mp4 --audio speech.wav --out out.mp4
```
"""


def test_a_misspelled_command_in_a_doc_fails_the_check():
    """The same extraction and check as the docs get: each misspelling fails, naming what is wrong; the line it
    was made from passes."""
    commands = commands_in(MISSPELLED)
    assert len(commands) == 7
    wrong = ["'dinte'", "'dmeo'", "'lawdnett'", "'dinet_'", "'hdtff'", "max_stepz", "'<modle>'"]
    for command, name in zip(commands, wrong):
        with pytest.raises((RegistryError, ConfigError), match=re.escape(name)):
            check_command(command)
        fixed = (command.replace("dinte", "dinet").replace("dmeo", "demo").replace("lawdnett", "lawdnet")
                 .replace("dinet_", "dinet").replace("hdtff", "hdtf").replace("stepz", "steps")
                 .replace("<modle>", "<model>"))
        check_command(fixed)
    with pytest.raises(RegistryError, match=r"did you mean 'dinet'"):
        check_command(commands[0])


# ---- run for real, with the core dependencies only -----------------------------------------------------
def core_env(tmp_path: Path) -> dict:
    """Child-process environment in which the optional extras and test tools cannot be imported."""
    blocker = tmp_path / "core_only"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import sys

        class _NotCore:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {NOT_CORE!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}} (not a core dependency)", name=name)
                return None

        sys.meta_path.insert(0, _NotCore())
        """))
    env = subprocess_env()
    env["PYTHONPATH"] = f"{blocker}:{env['PYTHONPATH']}"
    return env


def run_documented(command: str, tmp_path: Path, env: dict) -> subprocess.CompletedProcess:
    program, argv = arguments(command)
    head = ["-m", "talkingface.cli"] if program == "talkingface" else [str(REPO / "run_talkingface.py")]
    return subprocess.run([sys.executable, *head, *argv], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)


RUN_FOR_REAL = [c for _, c in COMMANDS if c.startswith(("talkingface list", "talkingface convert-deepspeech"))
                or "--help" in c]


def test_the_core_environment_really_lacks_the_extras(tmp_path):
    probe = subprocess.run([sys.executable, "-c", "import scenedetect"], capture_output=True, text=True,
                           env=core_env(tmp_path))
    assert probe.returncode == 1 and "not a core dependency" in probe.stderr


@pytest.mark.parametrize("command", RUN_FOR_REAL)
def test_documented_commands_run_in_the_default_install(command, tmp_path):
    if "convert-deepspeech" in command:  # the tiny graph with v0.1.0's structure stands in for output_graph.pb
        shutil.copy(DEEPSPEECH_GRAPH, tmp_path / "output_graph.pb")
    done = run_documented(command, tmp_path, core_env(tmp_path))
    assert done.returncode == 0, done.stderr
    if "convert-deepspeech" in command:
        converted = tmp_path / "checkpoints" / "deepspeech-0.1.0.safetensors"
        assert converted.is_file()
        load = subprocess.run([sys.executable, "-c", "from talkingface.audio.deepspeech import build_network; "
                               f"print(type(build_network({str(converted)!r})).__name__)"],
                              capture_output=True, text=True, env=core_env(tmp_path), cwd=tmp_path)
        assert load.returncode == 0 and load.stdout.strip() == "DeepSpeechNet", load.stderr
    if command.startswith("talkingface list --weights"):
        assert "clip_training_DINet_256mouth.pth" in done.stdout
    if "infer --model dinet --help" in command:
        assert "--paste" in done.stdout and "--feather" in done.stdout


def test_a_missing_extra_is_named_with_its_install_command(tmp_path):
    with pytest.raises(MissingDependencyError, match=r"shot detection needs .*pip install 'talkingface\[scenes\]'"):
        require("no_such_module_here", "shot detection", "scenes")
    with pytest.raises(MissingDependencyError, match="pip install dlib-bin"):
        require("no_such_module_here", "the dlib face backend", package="dlib-bin")
    from talkingface.media import VideoWriter

    videos = tmp_path / "videos"
    videos.mkdir()
    with VideoWriter(videos / "a.mp4", 25) as writer:
        for _ in range(5):
            writer.write(__import__("numpy").zeros((64, 64, 3), "uint8"))
    done = subprocess.run([sys.executable, "-m", "talkingface.cli", "preprocess", "--dataset", "custom",
                           "--data_dir", str(videos), "--preprocess.split_scenes=true",
                           f"--data.processed_dir={tmp_path / 'processed'}"],
                          capture_output=True, text=True, env=core_env(tmp_path), cwd=tmp_path, timeout=300)
    assert done.returncode == 1
    assert "pip install 'talkingface[scenes]'" in done.stderr and "unexpected" not in done.stderr, done.stderr
    served = subprocess.run([sys.executable, "-m", "talkingface.cli", "serve", "--model", "dinet", "--checkpoint",
                             "x.pth", "--video", "t.mp4"], capture_output=True, text=True, env=core_env(tmp_path),
                            cwd=tmp_path, timeout=300)
    assert served.returncode == 1 and "pip install 'talkingface[serve]'" in served.stderr, served.stderr


def test_deepspeech_parameter_count_in_the_docs_is_the_networks():
    net = DeepSpeechNet()  # v0.1.0's sizes (n_hidden 2048)
    zero_biases = sum(v.numel() for k, v in net.state_dict().items() if "bias_hh" in k)  # PyTorch's 2nd LSTM bias
    count = sum(p.numel() for p in net.parameters()) - zero_biases
    assert (count, zero_biases) == (122_732_573, 16_384)
    doc = (REPO / "docs" / "deepspeech.md").read_text()
    assert f"{count:,} parameters" in doc and f"{zero_biases:,} more entries" in doc
    assert count * 4 <= 490_971_586  # the float32 weights fit in the released 490,971,586-byte graph
