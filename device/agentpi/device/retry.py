"""When the device may start its next conversation: the failures in a row, and the pause they
earn, so a server that fails every conversation is not hammered."""

from __future__ import annotations

import time

from agentpi import events as ev
from agentpi.backoff import FAILURES_FOR_LONGEST_WAIT, reconnect_delay
from agentpi.events import EventBus
from agentpi.protocol.actions import ConversationEnded
from agentpi.protocol.failures import DEVICE, Failure, failure_of


def failures_after(failures: int, user_turns: int, ended: ConversationEnded) -> int:
    """Failed conversations in a row, once one more has ended: none after a conversation anyone
    spoke in or that ended cleanly (a kiosk nobody talks to greets and hangs up: that is the link
    working, and one network cut must not double its pause for good); then as the failure table
    says (``protocol/failures.py``): a refusal no retry fixes counts as the longest wait at once,
    a service or network failure one more, a device failure or a timeout of the user's none."""
    failure = failure_of(ended)
    if failure is None:
        return 0
    if failure.retry == "longest":
        return failures_after_connect(failures, failure)
    if user_turns:
        return 0
    if failure.retry == "backoff":
        return failures + 1
    return failures if failure is DEVICE else 0


def failures_after_connect(failures: int, failure: Failure) -> int:
    """One failure more, or at once the longest wait's count for a refusal no retry fixes (a
    connect is never the user's silence)."""
    if failure.retry == "longest":
        return max(failures + 1, FAILURES_FOR_LONGEST_WAIT)
    return failures + 1


class RetryPolicy:
    def __init__(self, events: EventBus, pause_s: float) -> None:
        self.events = events
        self.pause_s = pause_s
        """The kiosk's pause between conversations when nothing fails."""
        self.failures = 0
        """Conversations in a row that failed before reaching a user turn (connects included)."""
        self._retry_at = 0.0

    def connect_failed(self, failure: Failure) -> None:
        self.failures = failures_after_connect(self.failures, failure)

    def conversation_ended(self, user_turns: int, ended: ConversationEnded) -> None:
        self.failures = failures_after(self.failures, user_turns, ended)

    def next_pause(self) -> float:
        """The pause before the next conversation the device starts itself (the kiosk) or is
        asked for over the control socket: doubling after failures, announced with a ``retry``
        event."""
        delay = reconnect_delay(self.failures, self.pause_s)
        self._retry_at = time.monotonic() + delay
        if self.failures:
            self.events.publish(ev.RetryScheduled(round(delay, 3), self.failures))
        return delay

    def refusal(self) -> str | None:
        """Why a conversation asked for now has to wait, or None."""
        wait = self._retry_at - time.monotonic()
        if self.failures and wait > 0:
            return (
                f"the last {self.failures} conversation(s) failed; backing off, "
                f"try again in {wait:.0f} s"
            )
        return None
