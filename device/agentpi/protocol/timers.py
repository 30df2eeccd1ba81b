"""When the things that keep a conversation alive last happened, and when that means it is over.

The close policy: once the agent's turn is complete (``agent_response_complete``, or an
``agent_response`` whose audio stopped arriving and played out) and the user has then been silent
for ``silence_close_s``; once the agent has finished a turn the device asked to end after; or when
nothing at all has happened for ``idle_close_s``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, fields

from agentpi.protocol import messages as m


@dataclass(frozen=True)
class ConversationLimits:
    """When a conversation ends by itself: the config's [conversation] keys and the session's
    rules share these, defaults included."""

    silence_close_s: float = 4.0
    """User silence after the agent's completed turn that ends the conversation."""
    metadata_timeout_s: float = 10.0
    """How long to wait for ``conversation_initiation_metadata`` after the socket opened."""
    idle_close_s: float = 30.0
    """Close when neither side has done anything for this long (an agent that never answers)."""
    max_duration_s: float = 1800.0
    """No conversation lasts longer than this, whatever the server sends."""
    max_after_complete_s: float = 120.0
    """After ``agent_response_complete``, a server that keeps the turn going this long (more
    audio, more text) while the user says nothing is ended."""


DEFAULT_APPROVAL_TIMEOUT_S = 300
"""The definition's default ``approval_timeout_secs``."""


@dataclass(frozen=True)
class ApprovalPolicy:
    """What the device answers an MCP tool call that asks for approval: tools named in
    ``approve`` or ``deny`` (shell patterns, ``deny`` first) are answered at once; the rest ask
    the user, who has the call's ``approval_timeout_secs`` less ``margin_s`` before it is
    declined for them."""

    approve: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    margin_s: float = 5.0

    def answer(self, tool_name: str) -> bool | None:
        """True or False from the lists, None: ask."""
        if any(fnmatch.fnmatchcase(tool_name, pattern) for pattern in self.deny):
            return False
        if any(fnmatch.fnmatchcase(tool_name, pattern) for pattern in self.approve):
            return True
        return None

    def wait_s(self, approval_timeout_secs: int | None) -> float:
        """How long the user may take: the server's timeout (300 s when it names none) less the
        margin, so the answer arrives before the server gives up."""
        timeout = (
            DEFAULT_APPROVAL_TIMEOUT_S if approval_timeout_secs is None else approval_timeout_secs
        )
        return max(0.0, timeout - min(self.margin_s, timeout / 2))


@dataclass(frozen=True)
class SessionSettings(ConversationLimits):
    user_activity_interval_s: float = 1.0
    response_audio_idle_s: float = 1.0
    """Fallback for servers without ``agent_response_complete``: an ``agent_response`` whose audio
    has stopped arriving for this long, and has played out, counts as a complete turn."""
    error_close_grace_s: float = 2.0
    """After a server ``error``, how long to wait for the server's own close before closing."""
    latency_report_interval_s: float = 1.0
    """At most one ``latency`` event this often (each ping still gets its pong at once)."""
    tool_shown_max_s: float = 60.0
    """A tool the agent started shows as working until its response, or this long (a server
    that never reports the end must not leave the lights working for good)."""
    init: m.ConversationInitiationClientData = field(
        default_factory=m.ConversationInitiationClientData
    )
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)

    @classmethod
    def within(
        cls,
        limits: ConversationLimits,
        init: m.ConversationInitiationClientData,
        approvals: ApprovalPolicy | None = None,
    ) -> SessionSettings:
        """The session's settings for a conversation under ``limits`` (the config's)."""
        shared = {item.name: getattr(limits, item.name) for item in fields(ConversationLimits)}
        return cls(**shared, init=init, approvals=approvals or ApprovalPolicy())


@dataclass
class TurnTimes:
    drained_at: float = 0.0
    last_agent_audio_at: float = 0.0
    response_at: float | None = None
    complete_at: float | None = None
    last_activity_at: float = 0.0
    last_speech_at: float = 0.0
    end_after_turn_at: float | None = None
    turn_completed_at: float | None = None
    """The first ``agent_response_complete`` since the user last took a turn (agent activity
    does not clear it: a server that never stops talking after its turn is still bounded)."""

    def agent_active(self, now: float) -> None:
        self.complete_at = None
        self.last_activity_at = now

    def user_turn_over(self, now: float) -> None:
        """The agent owes a reply: no close until it has come."""
        self.complete_at = None
        self.response_at = None
        self.turn_completed_at = None
        self.last_activity_at = now

    def agent_turn_complete(self, now: float) -> None:
        self.complete_at = now
        self.last_activity_at = now
        if self.turn_completed_at is None:
            self.turn_completed_at = now

    def user_speaks(self, now: float) -> None:
        self.last_speech_at = now
        self.last_activity_at = now
        self.turn_completed_at = None  # the user has the floor: the agent's turn bound is off

    def overran(self, now: float, opened_at: float, settings: SessionSettings) -> str | None:
        """The hard limits, checked whatever else is going on (playback, tools)."""
        if now - opened_at >= settings.max_duration_s:
            return f"conversation reached its maximum length ({settings.max_duration_s:g} s)"
        completed = self.turn_completed_at
        if completed is not None and now - completed >= settings.max_after_complete_s:
            return (
                f"the agent kept its turn going {settings.max_after_complete_s:g} s "
                "after completing it"
            )
        return None

    def why_close(self, now: float, settings: SessionSettings) -> str | None:
        """The reason the conversation is over now (agent silent, nothing pending), or None."""
        if self.end_after_turn_at is not None and self._turn_over_since_end_asked(now, settings):
            return "device ended the conversation"
        quiet_since = self._agent_turn_done_at(now, settings)
        if quiet_since is not None:
            quiet_since = max(quiet_since, self.drained_at, self.last_speech_at)
            if now - quiet_since >= settings.silence_close_s:
                return "user silent after the agent's turn"
        if now - self.last_activity_at >= settings.idle_close_s:
            return "nothing happened in the conversation"
        return None

    def _turn_over_since_end_asked(self, now: float, settings: SessionSettings) -> bool:
        asked = self.end_after_turn_at
        assert asked is not None
        if self.complete_at is not None and self.complete_at >= asked:
            return True
        # an agent that says nothing more: end once it has been quiet as long as a user would be
        quiet_since = max(asked, self.last_agent_audio_at, self.drained_at)
        return now - quiet_since >= settings.silence_close_s

    def _agent_turn_done_at(self, now: float, settings: SessionSettings) -> float | None:
        """When the agent's current turn was finished, or None while it is still going."""
        if self.complete_at is not None:
            return self.complete_at
        if self.response_at is not None:
            audio_idle_since = max(self.response_at, self.last_agent_audio_at)
            if now - audio_idle_since >= settings.response_audio_idle_s:
                return audio_idle_since
        return None
