"""Typed events inside, the documented JSON lines outside: the lines did not change."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest

from agentpi import events as ev
from agentpi.cli.console import ConsolePrinter, JsonLinesWriter, LineWriter, describe, printable
from agentpi.events import EVENT_KINDS, EventBus, as_records

# One event of each kind and its line: the kinds older than typed events as the device wrote
# them before (the fields in the order the old `emit(kind, **fields)` calls gave them), the
# newer ones as documented in the README's event lines.
TODAY = [
    (ev.StateChanged("listening"), '{"event": "state", "state": "listening"}'),
    (
        ev.LedShown("idle", "off", "blue"),
        '{"event": "led", "state": "idle", "effect": "off", "color": "blue"}',
    ),
    (ev.TriggerFired("button"), '{"event": "trigger", "source": "button"}'),
    (
        ev.TriggerFired("wake", "hey_jarvis", 0.91, 1.2),
        '{"event": "trigger", "source": "wake", "model": "hey_jarvis", "score": 0.91, '
        '"audio_s": 1.2}',
    ),
    (
        ev.ListeningForWakeWord("openwakeword"),
        '{"event": "listening_for_wake_word", "engine": "openwakeword"}',
    ),
    (ev.ButtonAction("talk"), '{"event": "button", "action": "talk"}'),
    (ev.VolumeChanged(80.0), '{"event": "volume", "percent": 80.0}'),
    (ev.ControlError("in use"), '{"event": "control_error", "message": "in use"}'),
    (
        ev.MqttTakenOver("hall", "another client", 60.0),
        '{"event": "mqtt_taken_over", "client_id": "hall", "reason": "another client", '
        '"retry_in_s": 60.0}',
    ),
    (ev.AudioError("gone"), '{"event": "audio_error", "message": "gone"}'),
    (ev.AudioRetry(2, "gone"), '{"event": "audio_retry", "attempt": 2, "message": "gone"}'),
    (ev.AudioRestored(3), '{"event": "audio_restored", "attempts": 3}'),
    (ev.AudioDropped(160), '{"event": "audio_dropped", "samples": 160}'),
    (ev.PlaybackFlushed(800), '{"event": "playback_flushed", "dropped_samples": 800}'),
    (ev.Connecting("ws://127.0.0.1:1/x"), '{"event": "connecting", "url": "ws://127.0.0.1:1/x"}'),
    (ev.Connected(), '{"event": "connected"}'),
    (
        ev.ConnectFailed("no route", True, 2, "offline"),
        '{"event": "connect_failed", "message": "no route", "offline": true, "failures": 2, '
        '"failure": "offline"}',
    ),
    (
        ev.ConversationStarted("c1", "pcm_16000", "ulaw_8000"),
        '{"event": "conversation_started", "conversation_id": "c1", '
        '"user_input_audio_format": "pcm_16000", "agent_output_audio_format": "ulaw_8000"}',
    ),
    (
        ev.Disconnected(1000, "bye", "client"),
        '{"event": "disconnected", "code": 1000, "reason": "bye", "closed_by": "client"}',
    ),
    (
        ev.ConversationEnded("c1", "bye", 1000, "client", None, 3.5, 2, 40),
        '{"event": "conversation_ended", "conversation_id": "c1", "reason": "bye", "code": 1000, '
        '"closed_by": "client", "error": null, "duration_s": 3.5, "turns": 2, "ping_ms": 40}',
    ),
    (
        ev.ConversationEnded("c1", "bye", 1000, "client", None, 3.5, 2, 40, 620, 810, 1400),
        '{"event": "conversation_ended", "conversation_id": "c1", "reason": "bye", "code": 1000, '
        '"closed_by": "client", "error": null, "duration_s": 3.5, "turns": 2, "ping_ms": 40, '
        '"greeting_ms": 620, "turn_ms_median": 810, "turn_ms_worst": 1400}',
    ),
    (
        ev.Turn(2, "speech", 810),
        '{"event": "turn", "turn": 2, "after": "speech", "latency_ms": 810}',
    ),
    (ev.Latency(40), '{"event": "latency", "ping_ms": 40}'),
    (
        ev.ServerError(1011, "llm_error", "boom"),
        '{"event": "server_error", "code": 1011, "error_type": "llm_error", "message": "boom"}',
    ),
    (ev.ProtocolErrorSeen("bad"), '{"event": "protocol_error", "message": "bad"}'),
    (ev.UnknownEventSeen("x"), '{"event": "unknown_event", "type": "x"}'),
    (ev.UserTranscript("hi", 1), '{"event": "user_transcript", "text": "hi", "event_id": 1}'),
    (ev.TentativeUserTranscript("h"), '{"event": "tentative_user_transcript", "text": "h"}'),
    (ev.AgentResponse("yo", 2), '{"event": "agent_response", "text": "yo", "event_id": 2}'),
    (
        ev.AgentResponseCorrection("yo there", "yo", 2),
        '{"event": "agent_response_correction", "original": "yo there", "corrected": "yo", '
        '"event_id": 2}',
    ),
    (ev.TentativeAgentResponse("y"), '{"event": "tentative_agent_response", "text": "y"}'),
    (
        ev.AgentChatResponsePart("y", "delta"),
        '{"event": "agent_chat_response_part", "text": "y", "part": "delta"}',
    ),
    (ev.AgentResponseComplete(2), '{"event": "agent_response_complete", "event_id": 2}'),
    (ev.Interruption(2), '{"event": "interruption", "event_id": 2}'),
    (ev.VadScore(0.4), '{"event": "vad_score", "score": 0.4, "source": "agent"}'),
    (
        ev.VadScore(0.7, source="device"),
        '{"event": "vad_score", "score": 0.7, "source": "device"}',
    ),
    (
        ev.ToolCall("get_time", "t1", {"tz": "UTC"}),
        '{"event": "tool_call", "tool_name": "get_time", "tool_call_id": "t1", '
        '"parameters": {"tz": "UTC"}}',
    ),
    (
        ev.ToolResult("t1", False),
        '{"event": "tool_result", "tool_call_id": "t1", "is_error": false}',
    ),
    (
        ev.AgentToolResponse("end_call", "system", False),
        '{"event": "agent_tool_response", "tool_name": "end_call", "tool_type": "system", '
        '"is_error": false}',
    ),
    (ev.UserMessageSent("open"), '{"event": "user_message", "text": "open"}'),
    (ev.ContextualUpdateSent("ctx"), '{"event": "contextual_update_sent", "text": "ctx"}'),
    (
        ev.ContextualUpdateSent("21 C", "on_event.temperature"),
        '{"event": "contextual_update_sent", "text": "21 C", "context_id": "on_event.temperature"}',
    ),
    (ev.MicMuted(True), '{"event": "mic_muted", "muted": true}'),
    (ev.WakeWordChosen("alexa"), '{"event": "wake_word", "model": "alexa"}'),
    (ev.AgentWords("It is", 3), '{"event": "agent_words", "text": "It is", "event_id": 3}'),
    (
        ev.AgentReasoning("so", "delta"),
        '{"event": "agent_reasoning", "text": "so", "part": "delta"}',
    ),
    (
        ev.RichContentShown("row-1", "item_card"),
        '{"event": "rich_content", "rich_content_id": "row-1", "component": "item_card"}',
    ),
    (
        ev.AgentToolRequest("lookup", "t2", "webhook"),
        '{"event": "agent_tool_request", "tool_name": "lookup", "tool_call_id": "t2", '
        '"tool_type": "webhook"}',
    ),
    (
        ev.AgentToolResult("lookup", "t2", False, False, True, 4096),
        '{"event": "agent_tool_result", "tool_name": "lookup", "tool_call_id": "t2", '
        '"is_error": false, "is_blocked": false, "truncated": true, "result_chars": 4096}',
    ),
    (
        ev.McpToolCall("turn_on", "m1", "awaiting_approval", "svc", approval_timeout_s=300),
        '{"event": "mcp_tool_call", "tool_name": "turn_on", "tool_call_id": "m1", '
        '"state": "awaiting_approval", "service_id": "svc", "approval_timeout_s": 300}',
    ),
    (
        ev.McpApproval("turn_on", "m1", True, "button"),
        '{"event": "mcp_approval", "tool_name": "turn_on", "tool_call_id": "m1", '
        '"approved": true, "by": "button"}',
    ),
    (
        ev.McpConnectionStatus([{"integration_id": "home", "is_connected": True}]),
        '{"event": "mcp_connection_status", "integrations": '
        '[{"integration_id": "home", "is_connected": true}]}',
    ),
    (
        ev.ContextUsage("llm", 3100, 100000, 3.1),
        '{"event": "context_usage", "model": "llm", "context_tokens": 3100, '
        '"context_limit_tokens": 100000, "percent": 3.1}',
    ),
    (
        ev.AsrInitiationMetadata({"model": "scribe"}),
        '{"event": "asr_initiation_metadata", "metadata": {"model": "scribe"}}',
    ),
    (ev.GuardrailTriggered(), '{"event": "guardrail_triggered"}'),
    (ev.TurnProbability(0.42), '{"event": "turn_probability", "probability": 0.42}'),
    (ev.AgentTyping(True), '{"event": "agent_typing", "is_typing": true}'),
    (ev.ExternalAgent(True), '{"event": "external_agent", "connected": true}'),
    (ev.FeedbackSent("like", 6), '{"event": "feedback", "score": "like", "event_id": 6}'),
    (ev.ContextualUpdateReceived("ctx"), '{"event": "contextual_update", "text": "ctx"}'),
    (
        ev.Ignored("mystery_event", "listening"),
        '{"event": "ignored", "type": "mystery_event", "phase": "listening"}',
    ),
    (
        ev.PlaybackOverflow(48000, 120.0),
        '{"event": "playback_overflow", "refused_samples": 48000, "max_backlog_s": 120.0}',
    ),
    (ev.RetryScheduled(4.0, 2), '{"event": "retry", "delay_s": 4.0, "failures": 2}'),
    (
        ev.FetchingSignedUrl("owner.example"),
        '{"event": "fetching_signed_url", "host": "owner.example"}',
    ),
    (
        ev.Ready(["the wake word (hey_jarvis)"], "default", "default"),
        '{"event": "ready", "waiting_for": ["the wake word (hey_jarvis)"], '
        '"microphone": "default", "speaker": "default"}',
    ),
]


@pytest.mark.parametrize(
    ("event", "line"), TODAY, ids=[e.kind + str(i) for i, (e, _) in enumerate(TODAY)]
)
def test_each_kind_writes_todays_line(event: ev.DeviceEvent, line: str) -> None:
    stream = io.StringIO()
    bus = EventBus(clock=lambda: 12.3456789)
    lines = LineWriter(stream)
    bus.subscribe(JsonLinesWriter(lines))
    bus.publish(event)
    lines.close()
    expected = {"t": 12.345679, **json.loads(line)}
    assert stream.getvalue() == json.dumps(expected, ensure_ascii=False) + "\n"


def test_every_event_kind_has_its_line_checked_here() -> None:
    assert {e.kind for e, _ in TODAY} == set(EVENT_KINDS)


def test_listeners_get_typed_events_stamped_by_the_bus() -> None:
    clock = iter([1.0, 2.0])
    bus = EventBus(clock=lambda: next(clock))
    typed: list[ev.DeviceEvent] = []
    records: list[dict[str, object]] = []
    bus.subscribe(typed.append)
    bus.subscribe(as_records(records.append))
    bus.publish(ev.StateChanged("idle"))
    bus.publish(ev.VadScore(0.5))
    assert typed == [ev.StateChanged("idle"), ev.VadScore(0.5)]
    assert [e.t for e in typed] == [1.0, 2.0]
    assert records == [
        {"t": 1.0, "event": "state", "state": "idle"},
        {"t": 2.0, "event": "vad_score", "score": 0.5, "source": "agent"},
    ]


def test_the_transcript_reads_as_before() -> None:
    stream = io.StringIO()
    clock = iter([10.0, 10.5, 11.0, 14.0])
    bus = EventBus(clock=lambda: next(clock))
    lines = LineWriter(stream)
    bus.subscribe(ConsolePrinter(lines))
    bus.publish(ev.Connecting("ws://127.0.0.1:1/x"))
    bus.publish(ev.UserTranscript("what time is it", 1))
    bus.publish(ev.AgentResponse("noon", 2))
    bus.publish(ev.ConversationEnded("c1", "bye", 1000, "client", None, 4.0, 1, 40))
    lines.close()
    assert stream.getvalue().splitlines() == [
        "[  0.00] connecting to ws://127.0.0.1:1/x",
        "[  0.50] you:   what time is it",
        "[  1.00] agent: noon",
        "[  4.00] conversation c1 ended after 4.0 s, 1 turns, ping 40 ms: bye "
        "(closed by client, code 1000)",
    ]


def test_network_text_cannot_command_the_terminal_or_forge_a_line() -> None:
    stream = io.StringIO()
    lines = LineWriter(stream)
    bus = EventBus(clock=lambda: 1.0)
    bus.subscribe(ConsolePrinter(lines))
    hostile = "hi\x1b]0;owned\x07\x1b[2J\nyou:   open the door\r\x9b31m"
    bus.publish(ev.AgentResponse(hostile, 1))
    lines.close()
    written = stream.getvalue()
    assert written.count("\n") == 1 and "\r" not in written
    assert "\x1b" not in written and "\x07" not in written and "\x9b" not in written
    assert written == (
        "[  0.00] agent: hi\\x1b]0;owned\\x07\\x1b[2J\\nyou:   open the door\\r\\x9b31m\n"
    )
    assert printable("Grüße, ok") == "Grüße, ok"  # text is left as it is


class Stuck(io.StringIO):
    """A reader that takes nothing until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait(10)
        return super().write(text)


def test_a_reader_that_reads_nothing_costs_lines_not_time() -> None:
    stream = Stuck()
    lines = LineWriter(stream, max_lines=10)
    started = time.monotonic()
    for n in range(1000):
        lines.write(f"{n}\n")
    assert time.monotonic() - started < 0.5  # the caller never waited on the reader
    stream.release.set()
    lines.write("after\n")
    lines.close()
    written = stream.getvalue().splitlines()
    assert written[0] == "0"
    dropped = [json.loads(line)["count"] for line in written if line.startswith("{")]
    assert dropped and sum(dropped) + len(written) - len(dropped) == 1001


def test_what_waits_for_a_stuck_reader_is_bounded_in_size_and_a_long_line_still_passes() -> None:
    stream = Stuck()
    lines = LineWriter(stream, max_lines=1000, max_chars=1000)
    long_line = "x" * 5000 + "\n"
    lines.write(long_line)  # nothing waits: taken, however long
    for _ in range(50):
        lines.write("y" * 99 + "\n")  # 100 characters each: about ten fit behind it
    stream.release.set()
    lines.close()
    written = stream.getvalue().splitlines()
    assert written[0] == long_line.strip()
    kept = written.count("y" * 99)
    dropped = sum(json.loads(line)["count"] for line in written if line.startswith("{"))
    assert kept <= 10 and kept + dropped == 50, (kept, dropped)


def test_long_texts_are_shortened_on_the_console_and_say_by_how_much() -> None:
    text = "word " * 2000
    line = describe(ev.AgentResponse(text=text, event_id=1))
    assert line is not None and line.startswith("agent: word word")
    assert line.endswith(f"... [{len(text) - ev.MAX_SHOWN_CHARS} more characters]")
    record = ev.shortened_record({"event": "tool_call", "parameters": {"a": [text]}, "n": 3})
    assert record["parameters"]["a"][0] == ev.shortened(text) and record["n"] == 3


def test_a_reader_that_went_away_stops_the_writing_quietly() -> None:
    class Gone(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    lines = LineWriter(Gone())
    lines.write("x\n")
    lines.close()
    assert lines.broken
    lines.write("y\n")  # no error, nothing written


def test_the_transcript_says_what_the_device_waits_for() -> None:
    ready = ev.Ready(
        ["the wake word (hey_jarvis; openwakeword)", "the control socket (agentpi start / say)"],
        "USB PnP",
        "default",
    )
    assert describe(ready) == (
        "ready; a conversation starts on the wake word (hey_jarvis; openwakeword), the control "
        "socket (agentpi start / say)\n         microphone USB PnP, speaker default"
    )


def test_a_terminal_sees_the_words_so_far_in_place_and_a_pipe_sees_plain_lines() -> None:
    def printed(live: bool) -> str:
        stream = io.StringIO()
        clock = iter([0.0, 0.3, 0.6, 1.0, 1.2, 1.4, 1.6, 2.0, 2.5])
        bus = EventBus(clock=lambda: next(clock))
        lines = LineWriter(stream)
        bus.subscribe(ConsolePrinter(lines, live=live))
        bus.publish(ev.TentativeUserTranscript("what"))
        bus.publish(ev.TentativeUserTranscript("what time"))
        bus.publish(ev.UserTranscript("what time is it", 1))
        bus.publish(ev.AgentChatResponsePart("", "start"))
        bus.publish(ev.AgentChatResponsePart("It is", "delta"))
        bus.publish(ev.AgentWords("It ", 2))
        bus.publish(ev.AgentWords("is noon", 2))
        bus.publish(ev.AgentResponse("It is noon", 2))
        bus.publish(ev.Interruption(2))
        lines.close()
        return stream.getvalue()

    plain = printed(live=False)
    assert "\r" not in plain and "\x1b" not in plain
    assert plain.splitlines() == [
        "[  0.00] you ...: what",
        "[  0.30] you ...: what time",
        "[  0.60] you:   what time is it",
        "[  2.00] agent: It is noon",
        "[  2.50] -- interrupted: playback stopped",
    ]
    live = printed(live=True)
    shown = [part for part in live.split("\r\x1b[K") if part]
    assert shown[:3] == [
        "[  0.00] you ...: what",
        "[  0.30] you ...: what time",
        "[  0.60] you:   what time is it\n",
    ]
    assert "[  1.20] agent ...: It is" in shown
    assert "[  1.60] agent (speaking): It is noon" in shown
    # the reply's record line is printed above the live line, which is drawn again below it
    assert "[  2.00] agent: It is noon\n[  1.60] agent (speaking): It is noon" in shown
    assert live.endswith("[  2.50] -- interrupted: playback stopped\n")


def test_a_reply_streamed_without_end_keeps_the_live_line_bounded_and_current() -> None:
    """A server that streams parts for ever: the live line shows the newest words, and what the
    printer keeps stays within the shown bound (it kept every part before)."""
    stream = io.StringIO()
    bus = EventBus(clock=lambda: 1.0)
    lines = LineWriter(stream, max_lines=100_000, max_chars=10**9)
    printer = ConsolePrinter(lines, live=True)
    bus.subscribe(printer)
    bus.publish(ev.AgentChatResponsePart("", "start"))
    for _ in range(2000):
        bus.publish(ev.AgentChatResponsePart("x" * 50, "delta"))
    bus.publish(ev.AgentChatResponsePart(" THE END", "delta"))
    for _ in range(2000):
        bus.publish(ev.AgentWords("y" * 50, 7))
    bus.publish(ev.AgentWords(" SAID", 7))
    lines.close()
    shown = [part for part in stream.getvalue().split("\r\x1b[K") if part]
    streamed = [part for part in shown if "agent ...:" in part]
    spoken = [part for part in shown if "agent (speaking):" in part]
    assert streamed[-1].endswith(" THE END") and len(streamed[-1]) <= ev.MAX_SHOWN_CHARS + 40
    assert spoken[-1].endswith(" SAID") and len(spoken[-1]) <= ev.MAX_SHOWN_CHARS + 40
