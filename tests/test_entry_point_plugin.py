"""Third-party plugins installed as real packages and found through the entry-point group."""
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import EXAMPLE_PLUGIN, REPO, TINY_EXAMPLE
from helpers import cli_tokens


def pip_install_target(package: Path, target: Path) -> None:
    """pip-install ``package`` into ``target``, building from a copy (a build writes egg-info into
    the source folder, which must not leak into the repository or into other tests)."""
    source = target.parent / f"build-{package.name}"
    shutil.copytree(package, source, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, capture_output=True)


def clean_run(args: list[str], cwd: Path, pythonpath: Path | None) -> subprocess.CompletedProcess:
    """A child process that sees only the installed packages (plus ``pythonpath``), not the tests."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def write_probe_package(root: Path) -> Path:
    package = root / "probe_pkg"
    (package / "tf_probe_plugin").mkdir(parents=True)
    (package / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "tf-probe-plugin"
        version = "1.0"
        [project.entry-points."talkingface.plugins"]
        probe = "tf_probe_plugin"
        broken = "tf_probe_plugin_missing_module"
        [tool.setuptools]
        packages = ["tf_probe_plugin"]
    """))
    (package / "tf_probe_plugin" / "__init__.py").write_text(textwrap.dedent("""
        import numpy as np
        from talkingface import register_metric
        from talkingface.evaluation import Metric

        @register_metric("probe_mean_abs_diff", aliases=("probe_mad",))
        class MeanAbsDiff(Metric):
            def score(self, generated, reference):
                return {"mad": float(np.abs(generated.frames.astype(float) - reference.frames).mean())}
    """))
    return package


@pytest.mark.slow
def test_installed_package_registers_through_the_entry_point(tmp_path: Path):
    target = tmp_path / "site"
    pip_install_target(write_probe_package(tmp_path), target)
    before = clean_run(["-m", "talkingface.cli", "list", "metrics"], tmp_path, None)
    after = clean_run(["-m", "talkingface.cli", "list", "metrics"], tmp_path, target)
    assert before.returncode == 0 and after.returncode == 0, after.stderr
    assert "probe_mean_abs_diff" not in before.stdout
    metrics_line = next(line for line in after.stdout.splitlines() if line.startswith("metrics:"))
    assert "probe_mean_abs_diff" in metrics_line and "psnr" in metrics_line
    # The broken entry point is reported and skipped; the toolkit keeps working.
    assert "plugin 'broken' (tf_probe_plugin_missing_module) failed to load" in after.stderr


@pytest.mark.slow
def test_installed_example_plugin_runs_from_run_talkingface(tmp_path: Path):
    target = tmp_path / "site"
    pip_install_target(EXAMPLE_PLUGIN, target)
    listed = clean_run(["-m", "talkingface.cli", "list"], tmp_path, target)
    models = next(line for line in listed.stdout.splitlines() if line.startswith("models: "))
    assert "example_inpainter" in models.split(": ")[1].split(", ")  # found through its entry point
    assert "datasets: custom, demo, example_shapes, hdtf, lrs2" in listed.stdout
    # No "plugins" key here: the installed package must be found through its entry point alone.
    overrides = {"progress": False, "saved_dir": str(tmp_path / "saved"),
                 "data": {"processed_dir": str(tmp_path / "processed")},
                 "train": {"max_steps": 2, "batch_size": 4}, **TINY_EXAMPLE}
    result = clean_run([str(REPO / "run_talkingface.py"), "--model=example_inpainter",
                        "--dataset=example_shapes", *cli_tokens(overrides)], tmp_path, target)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "example_inpainter on example_shapes" in result.stdout
    run_dir = next((tmp_path / "saved").iterdir())
    assert json.loads((run_dir / "results.json").read_text())["evaluate"]["psnr"] > 5
