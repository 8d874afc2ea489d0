"""Deliberate breaks planted into the code under test (docs/testing.md, rule 5): a break check must change the code,
not the reference it is compared with."""
from __future__ import annotations

import __future__
import inspect
import textwrap


def mutated(monkeypatch, owner, name: str, *edits) -> None:
    """Break ``owner.name`` (a function of a module or a method of a class) for one test: its source with each edit
    ``old -> new`` applied (``old`` must occur exactly once), recompiled in its module and set in its place.
    ``edits``: ``old, new`` or ``(old, new), (old, new), ...``."""
    pairs = [tuple(edits)] if len(edits) == 2 and all(isinstance(e, str) for e in edits) else list(edits)
    function = inspect.getattr_static(owner, name)
    source = textwrap.dedent(inspect.getsource(function))
    for old, new in pairs:
        assert source.count(old) == 1, f"{name}: {old!r} occurs {source.count(old)} times"
        source = source.replace(old, new)
    code = compile(source, inspect.getsourcefile(function), "exec", flags=__future__.annotations.compiler_flag,
                   dont_inherit=True)
    namespace: dict = {}
    exec(code, function.__globals__, namespace)
    monkeypatch.setattr(owner, name, namespace[name])
