"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from tests.helpers import AGENTPI

REFERENCE_S = 0.03
"""The speed probe's time on the machine the timeouts were set on (a shared 2-core Xeon VM)."""


def speed_factor() -> float:
    """How much slower than the reference this machine is (at least 1): the best of five runs
    of a small Python + NumPy workload, the kind the device's own hot paths are made of."""
    import numpy as np

    signal = np.random.default_rng(0).standard_normal(1 << 16)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for n in range(300_000):
            total += n * n % 7
        for _ in range(20):
            np.fft.rfft(signal)
        best = min(best, time.perf_counter() - started)
    return max(1.0, best / REFERENCE_S)


SPEED = float(os.environ.get("AGENTPI_SPEED_FACTOR") or speed_factor())


def pytest_report_header() -> str:
    return f"agentpi: machine speed factor {SPEED:.1f} (timeouts scaled by it)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A slow board (a Pi 3, a Zero 2 W, emulation) gets proportionally longer timeouts, so it
    reports how long things took instead of failing on the clock."""
    if SPEED <= 1.0:
        return
    for item in items:
        marker = item.get_closest_marker("timeout")
        base = float(marker.args[0]) if marker and marker.args else 120.0
        item.add_marker(pytest.mark.timeout(base * SPEED))


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
        [*AGENTPI, "simulate", "--port", "0", "--everything"],
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
