"""The device's observable surface: one JSON object per line for everything that happens.

Every event has ``t`` (monotonic seconds) and ``event`` (its kind). Listeners (the ``--events``
writer, the console printer, tests) subscribe to the same stream.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any, TextIO

Event = dict[str, Any]
Listener = Callable[[Event], None]

CONTEXT_SENT_EVENT = "contextual_update_sent"


class EventBus:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def emit(self, kind: str, **fields: Any) -> Event:
        event: Event = {"t": round(self._clock(), 6), "event": kind, **fields}
        for listener in list(self._listeners):
            listener(event)
        return event


class JsonLinesWriter:
    """Writes each event as one JSON line and flushes, so a reader sees it at once."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, event: Event) -> None:
        self._stream.write(event_line(event))
        self._stream.flush()


def event_line(event: Event) -> str:
    """One event as the line `--events` and the control socket's subscribers get."""
    return json.dumps(event, ensure_ascii=False, default=str) + "\n"


class ConsolePrinter:
    """The conversation as a person wants to read it while it happens."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._start: float | None = None

    def __call__(self, event: Event) -> None:
        line = self._describe(event)
        if line is None:
            return
        if self._start is None:
            self._start = event["t"]
        self._stream.write(f"[{event['t'] - self._start:6.2f}] {line}\n")
        self._stream.flush()

    @staticmethod
    def _describe(event: Event) -> str | None:
        kind = event["event"]
        if kind == "connecting":
            return f"connecting to {event['url']}"
        if kind == "conversation_started":
            return (
                f"conversation {event['conversation_id']} started "
                f"(mic {event['user_input_audio_format']}, speaker "
                f"{event['agent_output_audio_format']})"
            )
        if kind == "user_transcript":
            return f"you:   {event['text']}"
        if kind == "agent_response":
            return f"agent: {event['text']}"
        if kind == "agent_response_correction":
            return f"agent (cut off): {event['corrected']}"
        if kind == "interruption":
            return "-- interrupted: playback stopped"
        if kind == "tool_call":
            return f"tool call: {event['tool_name']}({json.dumps(event['parameters'])})"
        if kind in ("server_error", "protocol_error", "connect_failed", "audio_error"):
            return f"!! {kind.replace('_', ' ')}: {event.get('message')}"
        if kind == "conversation_ended":
            # one summary line per conversation: what the journal shows an owner
            how = f"closed by {event['closed_by']}, code {event['code']}"
            error = f"; error: {event['error']}" if event.get("error") else ""
            facts = [f"{event.get('duration_s', 0):.1f} s", f"{event.get('turns', 0)} turns"]
            if event.get("ping_ms") is not None:
                facts.append(f"ping {event['ping_ms']:g} ms")
            ident = event.get("conversation_id") or "(none)"
            return (
                f"conversation {ident} ended after {', '.join(facts)}: "
                f"{event['reason']} ({how}){error}"
            )
        return None
