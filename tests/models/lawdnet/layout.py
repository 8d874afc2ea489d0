"""LawDNet's official state-dict layout per submodule: the generator from ``fixtures/lawdnet_keys.txt`` (the
listing the reference notes built from ``models/LawDNet.py``), the SyncNet and the discriminators from DINet's
listing (the release uses DINet's ``syncnet_256mouth.pth`` and the same ``Discriminator``). What
``tests/test_models.py`` checks each release against."""
from __future__ import annotations

import re
from pathlib import Path

from fixture_tools import load_module

HERE = Path(__file__).resolve().parent
KEYS_FILE = HERE / "fixtures" / "lawdnet_keys.txt"


def generator_layout() -> list[tuple[str, tuple[int, ...], str]]:
    """``[(key, shape, dtype), ...]`` of ``LawDNet(3, 15, 29)``; the listing gives key and shape (BatchNorm
    counters are int64, everything else float32)."""
    rows = []
    for line in KEYS_FILE.read_text().splitlines():
        if "\t" in line:
            key, shape = line.split("\t")[:2]
            dtype = "int64" if key.endswith("num_batches_tracked") else "float32"
            rows.append((key, tuple(int(d) for d in re.findall(r"\d+", shape)), dtype))
    return rows


def official_layout() -> dict[str, list[tuple[str, tuple[int, ...], str]]]:
    """``{submodule: [(key, shape, dtype), ...]}`` of the released networks."""
    dinet = load_module(HERE.parent / "dinet" / "layout.py", "dinet_layout").official_layout()
    return {"networks.generator": generator_layout(),
            **{name: rows for name, rows in dinet.items() if name != "networks.generator"}}
