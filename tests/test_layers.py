"""The shape of the code: no import circles between modules or between packages, and no
module reaching into another's private names.

The layers themselves (nothing imports from a layer above it) are import-linter's contracts in
pyproject.toml, run by `make lint`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

PACKAGE = Path(__file__).resolve().parents[1] / "device" / "agentpi"


def test_no_module_imports_itself_in_a_circle() -> None:
    graph = grimp.build_graph("agentpi", include_external_packages=False)
    circles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                circles.append(" -> ".join((module, *back)))
    assert circles == []


def _package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_package_imports_itself_in_a_circle() -> None:
    """agentpi.config composes the settings of wake, mqtt, leds, tools and control: none of
    those may import agentpi.config back, or the folders stop drawing the architecture."""
    graph = grimp.build_graph("agentpi", include_external_packages=False)
    imports: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if _package_of(module) != _package_of(imported):
                imports.setdefault(_package_of(module), set()).add(_package_of(imported))

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        waiting = [start]
        while waiting:
            for following in imports.get(waiting.pop(), set()) - seen:
                seen.add(following)
                waiting.append(following)
        return seen

    circles = sorted(
        f"{package} -> {imported}"
        for package, imported_packages in imports.items()
        for imported in imported_packages
        if package in reachable(imported)
    )
    assert circles == []


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_names_used_across(path: Path) -> list[str]:
    """A module's uses of another module's or another object's private names: imported
    (``from m import _name``) or reached (``thing._name``, where ``thing`` is not ``self`` or
    ``cls``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found += [
                f"{node.lineno}: from {node.module} import {alias.name}"
                for alias in node.names
                if _is_private(alias.name)
            ]
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_uses_a_private_name_of_another() -> None:
    used = {
        path.relative_to(PACKAGE).as_posix(): names
        for path in sorted(PACKAGE.rglob("*.py"))
        if (names := private_names_used_across(path))
    }
    assert used == {}


def test_the_private_name_check_finds_both_kinds(tmp_path: Path) -> None:
    module = tmp_path / "reaching.py"
    module.write_text(
        "from agentpi.fields import _b64, b64\n"
        "def f(mic, self):\n"
        "    with mic._lock:\n"
        "        return self._take() + mic.take()\n"
    )
    assert private_names_used_across(module) == [
        "1: from agentpi.fields import _b64",
        "3: mic._lock",
    ]


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


def test_every_package_and_top_module_sits_in_a_layer() -> None:
    """A package missing from the layers contract could import anything (mqtt once was)."""
    import tomllib

    pyproject = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())
    [packages] = [
        contract
        for contract in pyproject["tool"]["importlinter"]["contracts"]
        if contract["name"].startswith("packages:")
    ]
    layered = {
        name.strip() for layer in packages["layers"] for name in layer.replace(":", "|").split("|")
    }
    top = {
        f"agentpi.{path.stem if path.is_file() else path.name}"
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()
    }
    assert top - layered == set()
