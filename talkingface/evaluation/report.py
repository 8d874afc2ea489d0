"""Results tables for the terminal (texttable)."""
from __future__ import annotations

import math
from typing import Mapping

from texttable import Texttable


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4f}"
    return str(value)


def results_table(rows: Mapping[str, Mapping[str, object]], first: str = "run") -> str:
    """A table with one row per entry of ``rows`` (e.g. per checkpoint, the first column named ``first``) and one
    column per metric.

    ``skipped (<reason>)`` cells show as ``skipped [n]`` with the reasons listed under the table.
    """
    columns: list[str] = []
    for values in rows.values():
        columns += [k for k in values if k not in columns]
    reasons: list[str] = []

    def cell(value: object) -> str:
        text = _cell(value)
        if text.startswith("skipped (") and text.endswith(")"):
            reason = text[len("skipped ("):-1]
            if reason not in reasons:
                reasons.append(reason)
            return f"skipped [{reasons.index(reason) + 1}]"
        return text

    table = Texttable(max_width=0)
    table.set_deco(Texttable.HEADER | Texttable.BORDER | Texttable.VLINES)
    table.header([first, *columns])
    table.set_cols_dtype(["t"] * (len(columns) + 1))
    for name, values in rows.items():
        table.add_row([name, *(cell(values.get(c, "-")) for c in columns)])
    notes = "".join(f"\n[{i}] {reason}" for i, reason in enumerate(reasons, 1))
    return table.draw() + notes
