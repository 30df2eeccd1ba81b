"""What the event loop reports about callbacks nobody awaits: one line in the journal, not a
traceback. A library's callback can race a socket it has just closed (aiomqtt, when the broker
restarts: "Bad file descriptor" from ``add_writer``, 4 times in a 2,000-conversation soak); the
device goes on, and the journal of a device left alone should say what happened in a line.
``--verbose`` keeps asyncio's own report, traceback and all."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("agentpi")


def report_loop_errors_in_one_line(loop: asyncio.AbstractEventLoop) -> None:
    def report(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        said = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        log.warning("event loop: %s%s", context.get("message", "an error"), said)

    if not log.isEnabledFor(logging.DEBUG):
        loop.set_exception_handler(report)
