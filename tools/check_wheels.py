"""Every runtime dependency must install from a binary wheel on a 64-bit Raspberry Pi.

Resolves agentpi's dependencies (from pyproject.toml, markers evaluated for the target) with pip
as a Raspberry Pi OS / Debian bookworm arm64 machine would (aarch64, glibc 2.36: manylinux_2_17 up
to manylinux_2_36), wheels only, for Python 3.11 (bookworm) and 3.13 (trixie). Nothing is
installed; pip reads only the packages' metadata, so it takes seconds. A dependency (or a new
version of one) that would have to compile on the Pi fails here, unless it is listed in
BUILDS_FROM_SOURCE with the reason that is fine.

    python tools/check_wheels.py [--extra REQUIREMENT ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
TARGETS = ("3.11", "3.13")
GLIBC_MINORS = range(17, 37)  # bookworm's glibc is 2.36
PIP_TIMEOUT_S = 300
BUILDS_FROM_SOURCE = {
    "pyaudio": "PyPI has no Linux wheels at all; `make` installs portaudio19-dev, python3-dev and "
    "gcc first, and it compiles in under a minute on a Pi 4",
}


def requirements(python: str, extra: list[str]) -> list[str]:
    """The runtime dependencies that apply on an aarch64 Linux machine with ``python``."""
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    environment: dict[str, str] = {
        **{key: str(value) for key, value in default_environment().items()},
        "python_version": python,
        "python_full_version": f"{python}.0",
        "platform_machine": "aarch64",
        "sys_platform": "linux",
        "platform_system": "Linux",
    }
    wanted = []
    for text in [*declared, *extra]:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            why = str(exc).splitlines()[0]
            raise SystemExit(f"check_wheels: {text!r} is not a requirement ({why})") from None
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        if requirement.name.lower() in BUILDS_FROM_SOURCE:
            continue
        requirement.marker = None
        wanted.append(str(requirement))
    return wanted


def resolve(python: str, wanted: list[str]) -> tuple[list[str], str]:
    """(one line per wheel, pip's complaint or "")."""
    platforms = [f"manylinux_2_{minor}_aarch64" for minor in GLIBC_MINORS]
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        command = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
            "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
            "--target", str(Path(folder) / "target"), "--report", str(report),
            *(arg for platform in platforms for arg in ("--platform", platform)),
            "--platform", "manylinux2014_aarch64", *wanted,
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return (
                [],
                f"pip did not answer within {PIP_TIMEOUT_S} s (is the package index reachable?)",
            )
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
            return [], "; ".join(errors) or done.stderr.strip()[-300:]
        installs = json.loads(report.read_text())["install"]
    return [
        f"{item['metadata']['name']} {item['metadata']['version']}: "
        f"{item['download_info']['url'].rsplit('/', 1)[-1]}"
        for item in installs
    ], ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", action="append", default=[], help="check this one too")
    parser.add_argument("--verbose", action="store_true", help="list every wheel")
    args = parser.parse_args(argv)
    failed = False
    for python in TARGETS:
        wheels, problem = resolve(python, requirements(python, args.extra))
        if problem:
            failed = True
            print(f"aarch64 wheels, Python {python}: FAILED: {problem}")
            continue
        print(f"aarch64 wheels, Python {python}: {len(wheels)} packages, all binary wheels")
        for line in wheels if args.verbose else ():
            print(f"  {line}")
    for name, why in BUILDS_FROM_SOURCE.items():
        print(f"built from source on the Pi: {name} ({why})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
