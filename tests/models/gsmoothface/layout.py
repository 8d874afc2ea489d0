"""GSmoothFace's official state-dict layouts: TAFT's ``Face2FaceGenerator`` at the release's configuration, as
``fixtures/make_taft_fixture.py`` lists it from zhanghm1995/GSmoothFace_TAFT (``official_taft.npz``, ``layout``:
``key<TAB>shape<TAB>dtype``). A2EP's listing (``official_a2ep.npz``) is checked in ``test_a2ep.py``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def taft_layout() -> list[tuple[str, tuple[int, ...], str]]:
    """The official generator's ``(key, shape, dtype)`` rows, in order."""
    with np.load(FIXTURES / "official_taft.npz", allow_pickle=False) as data:
        rows = [str(line).split("\t") for line in data["layout"]]
    return [(key, tuple(int(d) for d in shape.split("x") if d), dtype) for key, shape, dtype in rows]


def official_layout() -> dict[str, list[tuple[str, tuple[int, ...], str]]]:
    """``{submodule: rows}``: the TAFT checkpoint's ``net_G_ema`` fills ``taft``, its ``net_G`` ``taft_train``."""
    return {"taft": taft_layout(), "taft_train": taft_layout()}
