"""How long to wait before trying again: one back-off for the agent's connects and the MQTT link."""

from __future__ import annotations

import math
import random

RECONNECT_MAX_S = 60.0
FAILURES_FOR_LONGEST_WAIT = 1 + math.ceil(math.log2(RECONNECT_MAX_S))
"""Failures in a row from which ``reconnect_delay`` is at its ceiling, whatever the base (7)."""


def reconnect_delay(failures: int, base_s: float, rng: random.Random | None = None) -> float:
    """How long to wait before trying again after ``failures`` failed connects in a row:
    doubling up to a minute, with +-25 % jitter so a room of devices that lost the same network
    does not come back in lockstep."""
    if failures <= 0:
        return base_s
    delay = min(RECONNECT_MAX_S, max(base_s, 1.0) * 2.0 ** (failures - 1))
    return delay * (rng or random).uniform(0.75, 1.25)
