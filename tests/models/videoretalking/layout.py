"""VideoReTalking's official state-dict layouts (``fixtures/videoretalking_keys.txt``: the listing the reference
notes built from OpenTalker/video-retalking's ``models/{LNet,ENet,DNet}.py`` at d32e8e5, one ``key (shape)`` per
line under ``### LNet`` / ``### ENet`` / ``### DNet``)."""
from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEYS_FILE = HERE / "fixtures" / "videoretalking_keys.txt"
NETWORKS = ("LNet", "ENet", "DNet")


def network_layout(name: str) -> list[tuple[str, tuple[int, ...], str]]:
    """``[(key, shape, dtype), ...]`` of the official ``LNet()``, ``ENet(lnet=LNet())`` or ``DNet()``, in state-dict
    order (BatchNorm counters are int64, everything else float32)."""
    if name not in NETWORKS:
        raise KeyError(f"{name}: the listing has {', '.join(NETWORKS)}")
    rows, section = [], None
    for line in KEYS_FILE.read_text().splitlines():
        if line.startswith("### "):
            section = line[4:].strip()
        elif section == name and line.strip():
            key, shape = line.split(" ", 1)
            dtype = "int64" if key.endswith("num_batches_tracked") else "float32"
            rows.append((key, tuple(int(d) for d in re.findall(r"\d+", shape)), dtype))
    return rows


def enet_own_layout() -> list[tuple[str, tuple[int, ...], str]]:
    """E-Net's own entries: its listing without the inner L-Net (``low_res.*``, which the official loader drops
    from ENet.pth and fills from LNet.pth)."""
    return [row for row in network_layout("ENet") if not row[0].startswith("low_res.")]


def official_layout() -> dict[str, list[tuple[str, tuple[int, ...], str]]]:
    """``{submodule: [(key, shape, dtype), ...]}`` of the released networks, by the model's submodule names."""
    return {"lnet": network_layout("LNet"), "enet": enet_own_layout(), "dnet": network_layout("DNet")}
