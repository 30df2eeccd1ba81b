"""Whether the wall clock can be believed yet. A Pi has no battery-backed clock: at boot it reads
the time it last saved (or 1970) until NTP sets it, and TLS then finds every certificate "not yet
valid". Only certificates care; every timer of the device runs on the monotonic clock.
"""

from __future__ import annotations

import datetime
import ssl
import time
from pathlib import Path

RELEASED = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp()
"""No clock that is set reads earlier than this release of agentpi."""
SYNCHRONISED_FLAG = Path("/run/systemd/timesync/synchronized")
"""Made by systemd-timesyncd once it has set the clock from the network."""
NOT_SET = "the clock is not set yet (time not synchronised)"


def clock_behind(now: float | None = None) -> bool:
    """The clock reads a time before this release: it has not been set since boot."""
    return (time.time() if now is None else now) < RELEASED


def clock_is_the_cause(exc: ssl.SSLCertVerificationError) -> bool:
    """Whether TLS refused a certificate because this clock is behind, not the certificate."""
    return "not yet valid" in (exc.verify_message or "") or clock_behind()


def certificate_refusal(exc: ssl.SSLCertVerificationError) -> str:
    """Why TLS refused a certificate, in words that name the clock when the clock is the cause."""
    if clock_is_the_cause(exc):
        return f"{NOT_SET}; it connects once the time is set"
    return f"its TLS certificate is not trusted ({exc.verify_message or exc.reason})"


def describe_clock(now: float | None = None) -> tuple[bool | None, str]:
    """For the doctor: (set and synchronised: True; behind: False; unknown: None, what it says)."""
    moment = time.time() if now is None else now
    reads = datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if clock_behind(moment):
        return False, f"reads {reads}: {NOT_SET}"
    if SYNCHRONISED_FLAG.exists():
        return True, f"reads {reads}, synchronised by systemd-timesyncd"
    return None, f"reads {reads}; not known to be synchronised (no {SYNCHRONISED_FLAG})"
