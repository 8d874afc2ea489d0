"""The import graph: no module imports itself back through others (the layers are checked by
``lint-imports`` in .ci/run, from the contract in pyproject.toml)."""
from __future__ import annotations

import grimp


def test_no_import_cycles():
    graph = grimp.build_graph("talkingface", exclude_type_checking_imports=True)
    cycles = set()
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                cycles.add(" -> ".join((module, *chain)))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))
