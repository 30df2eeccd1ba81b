"""The one error family every agentpi failure belongs to.

The command line catches ``AgentpiError`` and prints its message as one line; anything else that
escapes is a bug in agentpi. Two branches matter for the protocol core, as in h11:

- ``LocalProtocolError``: *we* used the session wrongly (an adapter called it out of order).
  It is a bug in agentpi and may raise.
- ``RemoteProtocolError``: the *server* sent something it should not have. The session always
  has an answer for it (ignore, report, or close with a reason) and never lets it escape.
"""

from __future__ import annotations


class AgentpiError(Exception):
    """Base of every error agentpi raises on purpose; its message is meant for a person."""


class LocalProtocolError(AgentpiError, RuntimeError):
    """The conversation core was called in a way its contract forbids (our bug, not the peer's)."""


class RemoteProtocolError(AgentpiError, ValueError):
    """The server broke the protocol: a frame that does not decode, or an event out of place."""


def reason_of(exc: BaseException) -> str:
    """An exception as a reason a person can read, also when it carries no message (many a
    library error, e.g. gpiozero's, prints as an empty string)."""
    return str(exc) or type(exc).__name__
