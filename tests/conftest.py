"""Fixtures shared by several test modules."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from tests.helpers import AGENTPI


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
