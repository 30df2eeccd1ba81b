"""The shape of the code: no import circles, modules of a readable size.

The layers themselves (nothing imports from a layer above it) are import-linter's contracts in
pyproject.toml, run by `make lint`.
"""

from __future__ import annotations

from pathlib import Path

import grimp

PACKAGE = Path(__file__).resolve().parents[1] / "device" / "agentpi"
MAX_LINES = 460
"""About 400, with room for a docstring: app.py (451) and protocol/session.py (418) are the
largest, and a module past this is split, not stretched."""


def test_no_module_imports_itself_in_a_circle() -> None:
    graph = grimp.build_graph("agentpi", include_external_packages=False)
    circles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                circles.append(" -> ".join((module, *back)))
    assert circles == []


def test_no_module_is_too_long_to_read() -> None:
    sizes = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert too_long == {}
