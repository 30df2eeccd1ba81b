"""Fixtures shared by several test modules."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from tests.helpers import AGENTPI


@pytest.fixture(autouse=True)
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A runtime directory of the test's own, so each device it runs (in this process or a
    child) has its own control socket; short, because socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="apx"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def simulator_process() -> Iterator[str]:
    """``agentpi simulate`` in a process of its own; yields its URL."""
    process = subprocess.Popen(
        [*AGENTPI, "simulate", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, line
        yield line.split()[-1]
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    """gpiozero's mock pins, PWM-capable (PWMLED, RGBLED), reset after the test."""
    pins = MockFactory(pin_class=MockPWMPin)
    yield pins
    pins.reset()
