"""Why a conversation ended, as a person reads it: the server's error, a refused override and
the agent setting to turn on, a lost connection, or a close code."""

from __future__ import annotations

from agentpi.protocol import messages as m
from agentpi.protocol.overrides import refusal_advice


def end_error(
    code: int | None,
    reason: str,
    closed_by: str,
    local_error: str | None,
    server_error: m.ErrorEvent | None,
) -> str | None:
    """Why a conversation that has closed ended in error (None: it ended well). A refused
    override says which agent setting to turn on."""
    said = " ".join(
        filter(None, (server_error.message or server_error.reason, reason))
        if server_error is not None
        else (reason,)
    )
    advice = refusal_advice(said)
    if advice is not None:
        return advice
    if server_error is not None:
        err = server_error
        return f"{err.error_type or 'error'}: {err.message or err.reason or 'no message'}"
    if local_error is not None or code == 1000:
        return local_error
    because = f" ({reason})" if reason else ""
    if code is None:
        return f"connection lost: {reason}"
    if closed_by == "server":
        return f"server closed the connection with {code}{because}"
    return f"the device closed the connection with {code}{because}"
