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


def test_the_wheel_check_fails_on_a_dependency_the_pi_would_have_to_compile() -> None:
    """tools/check_wheels.py (in `make lint`) with tflite-runtime added: it has aarch64 wheels
    for Python 3.11 only, so the 3.13 target must fail, and say which package."""
    import subprocess
    import sys

    tool = Path(__file__).resolve().parents[1] / "tools" / "check_wheels.py"
    done = subprocess.run(
        [sys.executable, str(tool), "--extra", "tflite-runtime"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "aarch64 wheels, Python 3.11: " in lines[0] and "all binary wheels" in lines[0]
    assert "Python 3.13: FAILED" in lines[1] and "tflite-runtime" in lines[1]


def test_set_up_refuses_a_32_bit_system_in_one_line() -> None:
    """armhf (Pi OS 32-bit) has no wheels for the wake engine or the echo canceller: make says
    so before it installs anything, instead of a compiler error halfway through."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        ["make", "-s", "-C", str(root), "supported-machine", "MACHINE=armv7l"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    said = [line for line in done.stdout.splitlines() if line.strip()]
    assert said == [
        "agentpi needs a 64-bit system (x86_64 or aarch64); this one is armv7l. On a Raspberry "
        "Pi 3, 4, 5 or Zero 2 W, flash Raspberry Pi OS (64-bit)."
    ]
