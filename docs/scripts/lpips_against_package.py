"""Compare ``talkingface.evaluation.lpips.LPIPS`` with the real ``lpips`` 0.1.4 package (not a CI test).

The package imports torchvision only to build its backbones. This script puts a minimal fake
``torchvision.models`` in ``sys.modules`` whose ``alexnet`` / ``vgg16`` / ``squeezenet1_1`` return OUR
feature modules, filled with seeded random weights (the torchvision ImageNet files are not needed),
so ``lpips.LPIPS(pretrained=True, net=..., pnet_rand=True)`` runs with the package's real v0.1 linear
heads. The same random backbone is saved torchvision-style (with a fake ``classifier.*``) and loaded
by our ``LPIPS`` from that file, with the package's head file; both score the same uint8 frames.

Usage (no torchvision anywhere):
    python -m venv /tmp/lpipsvenv && /tmp/lpipsvenv/bin/pip install torch==2.13.0 numpy scipy tqdm
    /tmp/lpipsvenv/bin/pip install --no-deps lpips==0.1.4
    PYTHONPATH=. .venv/bin/python docs/scripts/lpips_against_package.py \
        --lpips-path /tmp/lpipsvenv/lib/python3.11/site-packages
(``--lpips-path`` is any folder holding the ``lpips`` package, e.g. an unzipped wheel; the repository's
own environment runs the script so that our code runs exactly as in the toolkit.)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch


def fake_torchvision(backbones: dict[str, torch.nn.Module]) -> None:
    """Register ``torchvision.models`` exposing ``alexnet``, ``vgg16``, ``squeezenet1_1``."""
    models = types.ModuleType("torchvision.models")

    def factory(name: str):
        def build(pretrained: bool = False, **_):
            if pretrained:
                raise RuntimeError("the fake torchvision has no ImageNet weights; use pnet_rand=True")
            return backbones[name]
        return build

    models.alexnet, models.vgg16, models.squeezenet1_1 = factory("alex"), factory("vgg"), factory("squeeze")
    package = types.ModuleType("torchvision")
    package.models = models
    sys.modules["torchvision"], sys.modules["torchvision.models"] = package, models


def test_frames(rng: np.random.Generator, n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of smooth-plus-noise uint8 RGB frames and lightly perturbed copies of them."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)], -1)
    a = np.clip(127.5 + 90 * base[None] + rng.normal(0, 25, (n, h, w, 3)), 0, 255).astype(np.uint8)
    b = np.clip(a.astype(np.float64) + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    b[-1] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # one unrelated pair: a large distance
    return a, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lpips-path", required=True, help="folder that contains the lpips package")
    parser.add_argument("--nets", default="alex,vgg,squeeze")
    args = parser.parse_args()

    from talkingface.evaluation.lpips import LPIPS
    from talkingface.evaluation.lpips.network import BACKBONES
    from talkingface.evaluation.lpips.weights import HEAD_WEIGHTS

    torch.manual_seed(0)
    ours_backbones = {net: BACKBONES[net]() for net in args.nets.split(",")}
    package_backbones = {net: BACKBONES[net]() for net in ours_backbones}
    for net in ours_backbones:
        package_backbones[net].load_state_dict(ours_backbones[net].state_dict())
    fake_torchvision(package_backbones)
    sys.path.insert(0, args.lpips_path)
    import lpips  # noqa: E402  (after the fake torchvision)

    rng = np.random.default_rng(0)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for net, backbone in ours_backbones.items():
            head = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
            HEAD_WEIGHTS[net].verify(head)  # the real head file, SHA-256 checked
            state = {**backbone.state_dict(), "classifier.1.weight": torch.zeros(2, 2)}
            torch.save(state, Path(tmp) / f"{net}.pth")
            ours = LPIPS(net, Path(tmp) / f"{net}.pth", head, device="cpu", batch_size=3, check_sha256=False)
            reference = lpips.LPIPS(pretrained=True, net=net, version="0.1", pnet_rand=True, verbose=False)
            for h, w in ((64, 64), (96, 128), (224, 224)):
                a, b = test_frames(rng, 5, h, w)
                mine = ours(a, b)
                with torch.no_grad():
                    theirs = reference(torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255,
                                       torch.from_numpy(b).permute(0, 3, 1, 2).float() / 255,
                                       normalize=True).flatten().double().numpy()
                diff = float(np.max(np.abs(mine - theirs)))
                worst = max(worst, diff)
                print(f"net={net:7s} {h}x{w}: ours {np.round(mine, 6).tolist()}")
                print(f"{'':12s}{' ' * len(f'{h}x{w}')}  lpips {np.round(theirs, 6).tolist()}  max |diff| {diff:.3g}")
    print(f"max abs difference over all nets and sizes: {worst:.3g}")


if __name__ == "__main__":
    main()
