"""Compatibility shims applied (by monkeypatching, never by editing their files) before importing the
reference LSE code of Rudrabha/Wav2Lip and joonson/syncnet_python on a CPU-only, NumPy-2 machine.

Each shim is listed in docs/benchmarks_evaluation.md. Run with the reference venv (/tmp/refvenv), not
the toolkit's; the reference checkouts stay outside the repository and are passed as arguments.
"""
from __future__ import annotations

import os
import sys
import tempfile
import types
from pathlib import Path


def install(syncnet_python: str, wav2lip: str | None = None, threads: int = 2) -> dict:
    """Apply every shim; returns what was done (for the JSON record)."""
    import numpy as np
    import torch

    done = []
    torch.set_num_threads(threads)
    # 1. NumPy 2 removed the deprecated aliases; detectors/s3fd/box_utils.py uses np.int.
    for name, value in (("int", int), ("float", float), ("bool", bool)):
        if name not in np.__dict__:
            setattr(np, name, value)
            done.append(f"np.{name} = {value.__name__}")
    # 2. CPU only: the reference calls .cuda() on the network and every batch (SyncNetInstance_calc_scores).
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    done.append("Tensor.cuda / Module.cuda -> no-op (CPU)")
    # 3. detectors/s3fd/__init__.py imports torchvision.transforms and never uses it; torchvision
    #    needs a CUDA torch build here, so an empty module stands in.
    if "torchvision" not in sys.modules:
        tv = types.ModuleType("torchvision")
        tv.transforms = types.ModuleType("torchvision.transforms")
        sys.modules["torchvision"] = tv
        sys.modules["torchvision.transforms"] = tv.transforms
        done.append("empty torchvision / torchvision.transforms modules (import unused by S3FD)")
    # 4. No system ffmpeg: a symlink named ffmpeg to imageio-ffmpeg's static binary, first on PATH.
    import imageio_ffmpeg

    bin_dir = Path(tempfile.gettempdir()) / "refbench_ffmpeg_bin"
    bin_dir.mkdir(exist_ok=True)
    link = bin_dir / "ffmpeg"
    if not link.exists():
        link.symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    done.append(f"PATH: {link} -> imageio-ffmpeg binary")
    # 5. Import paths: Wav2Lip's scores_LSE expects syncnet_python's SyncNetModel.py beside it (its README
    #    says to copy the folder into syncnet_python); putting both on sys.path is equivalent.
    sys.path.insert(0, str(Path(syncnet_python).resolve()))
    if wav2lip:
        sys.path.insert(0, str(Path(wav2lip).resolve() / "evaluation" / "scores_LSE"))
    return {"shims": done, "numpy": np.__version__, "torch": torch.__version__, "threads": torch.get_num_threads()}


