"""A board's reports: the terminal table, Markdown, CSV, JSON, frame strips and a static HTML page (no server) with
the table, the protocol card and every clip's videos side by side with the ground truth."""
from __future__ import annotations

import csv
import html
import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..evaluation.report import results_table
from ..evaluation.strip import write_strip
from ..io_utils import atomic_write_json, atomic_write_text
from .protocol import card_lines

if TYPE_CHECKING:
    from .run import Board, Row

SPEED = "frames/s"


def _speed_cell(row: "Row") -> str | None:
    if not row.speed:
        return None
    return " / ".join(f"{value:g} ({dtype})" for dtype, value in row.speed["frames_per_s"].items())


def table_rows(board: "Board") -> dict[str, dict[str, Any]]:
    """``{label: {column: value}}`` in display order: the summary scores, then frames/s where known."""
    rows = {}
    any_speed = any(row.speed for row in board.rows)
    for row in board.rows:
        values = dict(row.summary)
        if any_speed:
            values[SPEED] = _speed_cell(row) or "-"
        rows[row.label] = values
    return rows


def columns(rows: dict[str, dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for values in rows.values():
        out += [k for k in values if k not in out]
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4f}"
    return str(value)


def footnoted(rows: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The cells as text, each ``skipped (reason)`` shortened to ``skipped [n]``; and the reasons, in order."""
    reasons: list[str] = []
    out = {}
    for label, values in rows.items():
        cells = {}
        for column, value in values.items():
            text = _cell(value)
            if text.startswith("skipped (") and text.endswith(")"):
                reason = text[len("skipped ("):-1]
                if reason not in reasons:
                    reasons.append(reason)
                text = f"skipped [{reasons.index(reason) + 1}]"
            cells[column] = text
        out[label] = cells
    return out, reasons


def _arrow(board: "Board", column: str) -> str:
    better = board.higher_is_better.get(column)
    return "" if better is None else (" ↑" if better else " ↓")


def terminal_table(board: "Board") -> str:
    text = results_table(table_rows(board), first="entry")
    notes = [board.speed_note] if board.speed_note else []
    return "\n".join([text, *notes])


def markdown(board: "Board") -> str:
    rows, reasons = footnoted(table_rows(board))
    cols = columns(rows)
    lines = [f"# Leaderboard: {board.dataset}", "",
             "| entry | " + " | ".join(c + _arrow(board, c) for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for label, values in rows.items():
        lines.append(f"| {label} | " + " | ".join(values.get(c, "-") for c in cols) + " |")
    lines += [f"\n[{i}] {reason}" for i, reason in enumerate(reasons, 1)]
    if board.speed_note:
        lines += ["", board.speed_note]
    lines += ["", "Entries:", ""] + [f"- **{row.label}** ({row.kind}): {row.source}" for row in board.rows]
    lines += ["", "## Protocol card", "", "```", *card_lines(board.card), "```", ""]
    return "\n".join(lines)


def csv_text(board: "Board") -> str:
    rows = table_rows(board)
    cols = columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["entry", "kind", *cols])
    kinds = {row.label: row.kind for row in board.rows}
    for label, values in rows.items():
        writer.writerow([label, kinds[label], *(values.get(c, "") for c in cols)])
    return buffer.getvalue()


def _relative(path: str | Path, out: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), out.resolve())).as_posix()


def html_page(board: "Board", out: Path, strips: dict[str, Path]) -> str:
    """The static page: the table, the entries, the card, and per clip a ``<video>`` per row and the frame strip."""
    rows, reasons = footnoted(table_rows(board))
    cols = columns(rows)
    esc = html.escape
    head = "".join(f"<th>{esc(c + _arrow(board, c))}</th>" for c in cols)
    body = "".join(f'<tr data-entry="{esc(label)}"><th scope="row">{esc(label)}</th>'
                   + "".join(f"<td>{esc(values.get(c, '-'))}</td>" for c in cols) + "</tr>"
                   for label, values in rows.items())
    notes = "".join(f"<li>[{i}] {esc(reason)}</li>" for i, reason in enumerate(reasons, 1))
    entries = "".join(f"<li><b>{esc(row.label)}</b> ({esc(row.kind)}): {esc(row.source)}</li>" for row in board.rows)
    card = esc("\n".join(card_lines(board.card)))
    clips = []
    for clip in board.clips:
        figures = "".join(
            f'<figure><video controls preload="metadata" src="{esc(_relative(row.videos[clip], out))}"></video>'
            f"<figcaption>{esc(row.label)}</figcaption></figure>"
            for row in board.rows if clip in row.videos)
        strip = (f'<img class="strip" alt="frame strip of {esc(clip)}" src="{esc(_relative(strips[clip], out))}">'
                 if clip in strips else "")
        clips.append(f'<section class="clip" id="clip-{esc(clip)}"><h3>{esc(clip)}</h3>'
                     f'<div class="videos">{figures}</div>{strip}</section>')
    note = (f'<ul class="notes">{notes}</ul>' if notes else "") + (f"<p>{esc(board.speed_note)}</p>"
                                                                   if board.speed_note else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Leaderboard: {esc(board.dataset)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #bbb; padding: 4px 8px; text-align: right; }}
th[scope=row] {{ text-align: left; }}
.notes {{ list-style: none; padding: 0; color: #555; }}
.videos {{ display: flex; flex-wrap: wrap; gap: 8px; }} figure {{ margin: 0; }} video {{ width: 240px; }}
pre {{ background: #f4f4f4; padding: 1em; overflow-x: auto; }} .strip {{ max-width: 100%; margin-top: 8px; }}
</style></head><body>
<h1>Leaderboard: {esc(board.dataset)}</h1>
<table id="leaderboard"><thead><tr><th>entry</th>{head}</tr></thead><tbody>{body}</tbody></table>
{note}<h2>Entries</h2><ul>{entries}</ul>
<h2>Protocol card</h2><pre id="protocol">{card}</pre>
<h2>Clips</h2>{''.join(clips)}
</body></html>
"""


def write_strips(board: "Board", out: Path, frames: int) -> dict[str, Path]:
    """A PNG per clip: the same frames of every row (ground truth first), or none when ``frames`` is 0."""
    strips = {}
    for clip in board.clips if frames > 0 else ():
        rows = [(row.label, Path(row.videos[clip])) for row in board.rows if clip in row.videos]
        strips[clip] = write_strip(rows, out / "strips" / f"{clip}.png", frames=frames)
    return strips


def write_reports(board: "Board", out: Path, strip_frames: int) -> dict[str, Path]:
    """Write ``leaderboard.{json,md,csv,txt,html}`` and the strips into ``out``, atomically; print the table."""
    strips = write_strips(board, out, strip_frames)
    text = terminal_table(board)
    written = {"json": atomic_write_json(out / "leaderboard.json", board.as_dict()),
               "md": atomic_write_text(out / "leaderboard.md", markdown(board)),
               "csv": atomic_write_text(out / "leaderboard.csv", csv_text(board)),
               "txt": atomic_write_text(out / "leaderboard.txt", text + "\n"),
               "html": atomic_write_text(out / "index.html", html_page(board, out, strips))}
    print(text)
    print(f"report: {written['html']}")
    return written
