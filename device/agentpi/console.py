"""Where events leave the process for a person or a program: the transcript and JSON lines."""

from __future__ import annotations

import json
from typing import TextIO

from agentpi import events as ev
from agentpi.events import DeviceEvent, event_line


class JsonLinesWriter:
    """Writes each event as one JSON line and flushes, so a reader sees it at once."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, event: DeviceEvent) -> None:
        self._stream.write(event_line(event.record()))
        self._stream.flush()


class ConsolePrinter:
    """The conversation as a person wants to read it while it happens."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._start: float | None = None

    def __call__(self, event: DeviceEvent) -> None:
        line = describe(event)
        if line is None:
            return
        if self._start is None:
            self._start = event.t
        self._stream.write(f"[{event.t - self._start:6.2f}] {line}\n")
        self._stream.flush()


def describe(event: DeviceEvent) -> str | None:
    """The transcript line for an event, or None for those a person need not read."""
    match event:
        case ev.Connecting(url=url):
            return f"connecting to {url}"
        case ev.ConversationStarted():
            return (
                f"conversation {event.conversation_id} started "
                f"(mic {event.user_input_audio_format}, speaker "
                f"{event.agent_output_audio_format})"
            )
        case ev.UserTranscript(text=text):
            return f"you:   {text}"
        case ev.AgentResponse(text=text):
            return f"agent: {text}"
        case ev.AgentResponseCorrection(corrected=corrected):
            return f"agent (cut off): {corrected}"
        case ev.Interruption():
            return "-- interrupted: playback stopped"
        case ev.ToolCall(tool_name=name, parameters=parameters):
            return f"tool call: {name}({json.dumps(parameters)})"
        case (
            ev.ServerError(message=message)
            | ev.ProtocolErrorSeen(message=message)
            | ev.ConnectFailed(message=message)
            | ev.AudioError(message=message)
        ):
            return f"!! {event.kind.replace('_', ' ')}: {message}"
        case ev.ConversationEnded():
            return summary_line(event)
    return None


def summary_line(event: ev.ConversationEnded) -> str:
    """One line per conversation: what the journal shows an owner."""
    how = f"closed by {event.closed_by}, code {event.code}"
    error = f"; error: {event.error}" if event.error else ""
    facts = [f"{event.duration_s:.1f} s", f"{event.turns} turns"]
    if event.ping_ms is not None:
        facts.append(f"ping {event.ping_ms:g} ms")
    ident = event.conversation_id or "(none)"
    return f"conversation {ident} ended after {', '.join(facts)}: {event.reason} ({how}){error}"
