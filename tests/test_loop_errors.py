"""The event loop's reports of errors in callbacks reach the journal as one line."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agentpi.system.loop_errors import report_loop_errors_in_one_line


def test_an_error_in_a_loop_callback_is_one_line_not_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def races_a_closed_socket() -> None:
        raise OSError(9, "Bad file descriptor")

    async def scenario() -> None:
        report_loop_errors_in_one_line(asyncio.get_running_loop())
        asyncio.get_running_loop().call_soon(races_a_closed_socket)
        await asyncio.sleep(0.05)

    with caplog.at_level(logging.WARNING, logger="agentpi"):
        asyncio.run(scenario())
    [record] = [r for r in caplog.records if r.name == "agentpi"]
    assert "Bad file descriptor" in record.getMessage() and record.exc_info is None
