"""The 2026 Agents API on the device: MCP approval (press, long press, no answer, the lists),
the working lights while a tool runs, feedback on the last answer, context that replaces itself.

Real device, real simulator (the platform's MCP flow), gpiozero's mock pins for the button and
an RGB LED whose pins are read over time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from agentpi.agent.script import McpCallScript, ServerToolScript, SimulatorScript, TurnScript
from agentpi.config.document import ButtonConfig, ContextConfig, TriggerConfig
from agentpi.device.app import Device
from agentpi.events import EventRecord
from agentpi.leds.driver import GpioLeds, LedController
from agentpi.leds.patterns import LedAnimator
from agentpi.leds.settings import LedSettings
from agentpi.protocol import messages as m
from agentpi.tools.settings import McpToolsConfig, ToolsConfig
from agentpi.triggers.button import ButtonInput
from tests.helpers import Run, run_conversation
from tests.speech import join, save, silence, speak

pytestmark = pytest.mark.realtime  # paced audio, real presses: not under emulation

BUTTON = 23
RGB = LedSettings(type="rgbled", pins=(17, 27, 22))
RED, GREEN, BLUE = RGB.pins


def button_on(factory: MockFactory, **config: Any) -> ButtonInput:
    return ButtonInput(ButtonConfig(pin=BUTTON, bounce_s=0.0, **config), pin_factory=factory)


def rgb_leds(factory: MockFactory) -> Any:
    def make(sink: Any) -> LedController:
        return LedController(
            GpioLeds(RGB, factory),
            LedAnimator(RGB.pattern_table()),
            level_source=lambda: sink.output_level,
        )

    return make


def asking_turn(approval_timeout_s: int = 60, name: str = "turn_on") -> SimulatorScript:
    call = McpCallScript(name, {"entity": "light.kitchen"}, approval_timeout_s=approval_timeout_s)
    turn = TurnScript(transcript="turn on the kitchen light", mcp_call=call, response="{result}")
    return SimulatorScript(first_turn=TurnScript(silent=True), turns=(turn,))


def question_wav(tmp_path: Path, after_s: float = 14.0) -> Path:
    return save(
        tmp_path / "mic.wav", join(silence(0.5), speak("turn on the light"), silence(after_s))
    )


@dataclass
class Presses:
    """The button, pressed from the event loop when the device reaches a state."""

    factory: MockFactory
    started: bool = False
    at: dict[str, float] = field(default_factory=dict)

    def press(self, hold_s: float) -> None:
        pin = self.factory.pin(BUTTON)
        pin.drive_low()
        asyncio.get_running_loop().call_later(hold_s, pin.drive_high)

    def start_on_idle(self, event: EventRecord) -> None:
        if event["event"] == "state" and event["state"] == "idle" and not self.started:
            self.started = True
            self.press(0.05)


def on_state(state: str, presses: Presses, then: Any) -> Any:
    def on_event(event: EventRecord) -> None:
        presses.start_on_idle(event)
        if event["event"] == "state" and event["state"] == state and state not in presses.at:
            presses.at[state] = time.monotonic()
            then()

    return on_event


def timeline(factory: MockFactory, pin: int) -> list[tuple[float, float]]:
    """The pin's values with the monotonic time each was set (a mock pin keeps the time since
    the change before, and when its last change was)."""
    mock = factory.pin(pin)
    at = mock._last_change  # gpiozero's mock keeps no absolute times
    out: list[tuple[float, float]] = []
    for state in reversed(mock.states):
        out.append((at, float(state.state)))
        at -= state.timestamp
    return out[::-1]


def blinks(factory: MockFactory, pin: int, start: float, end: float) -> int:
    """How often the pin went from dark to lit between two moments."""
    lit = [value > 0.5 for t, value in timeline(factory, pin) if start <= t <= end]
    return sum(1 for before, now in itertools.pairwise(lit) if now and not before)


def approval_run(
    tmp_path: Path,
    factory: MockFactory,
    hold_s: float | None,
    script: SimulatorScript | None = None,
    mcp: McpToolsConfig | None = None,
    wait_s: float = 1.6,
) -> tuple[Run, Presses]:
    presses = Presses(factory)
    loop_later: dict[str, Any] = {}

    def answer() -> None:
        if hold_s is not None:
            loop = asyncio.get_running_loop()
            loop_later["h"] = loop.call_later(wait_s, presses.press, hold_s)

    run = run_conversation(
        tmp_path,
        script=script or asking_turn(),
        input_wav=question_wav(tmp_path),
        trigger=TriggerConfig(mode="button"),
        button=button_on(factory),
        leds=rgb_leds(factory),
        on_event=on_state("awaiting_approval", presses, answer),
        sections={"tools": ToolsConfig(mcp=mcp or McpToolsConfig())},
        timeout=60,
        cues=True,
    )
    return run, presses


def approvals(run: Run) -> list[m.McpToolApprovalResult]:
    return [result for _, result in run.record.approvals]


def test_a_short_press_approves_and_the_lights_ask_until_then(
    tmp_path: Path, factory: MockFactory
) -> None:
    run, presses = approval_run(tmp_path, factory, hold_s=0.1)
    assert run.exit_code == 0
    assert [a.is_approved for a in approvals(run)] == [True]
    answered = run.of_kind("mcp_approval")
    assert [(a["approved"], a["by"], a["tool_name"]) for a in answered] == [
        (True, "button", "turn_on")
    ]
    assert [b["action"] for b in run.of_kind("button")] == ["approve"]
    states = run.states()
    asked = states.index("awaiting_approval")
    assert "working" in states[:asked]  # agent_tool_request: the tool is at work
    assert states[asked + 1] == "working"  # approved: loading, then its response
    assert run.record.turns[-1].text == "done"
    # the lights blinked yellow (red and green on, blue off) for the 1.6 s of the question
    asked_at = presses.at["awaiting_approval"]
    assert blinks(factory, RED, asked_at, asked_at + 1.5) >= 1
    assert blinks(factory, GREEN, asked_at, asked_at + 1.5) >= 1
    assert blinks(factory, BLUE, asked_at, asked_at + 1.5) == 0
    assert run.cues is not None and run.cues.played.count("question") == 1  # heard, once
    asked_led = [e for e in run.of_kind("led") if e["state"] == "awaiting_approval"]
    assert asked_led and asked_led[0]["effect"] == "blink" and asked_led[0]["color"] == "yellow"


def test_a_long_press_declines(tmp_path: Path, factory: MockFactory) -> None:
    run, _ = approval_run(tmp_path, factory, hold_s=1.4)
    assert [a.is_approved for a in approvals(run)] == [False]
    assert [b["action"] for b in run.of_kind("button")] == ["decline"]
    assert run.of_kind("mcp_approval")[0]["by"] == "button"
    assert run.record.turns[-1].text == "declined"


def test_no_answer_declines_before_the_server_gives_up(
    tmp_path: Path, factory: MockFactory
) -> None:
    """A 7 s approval timeout: the device answers no after 3.5 s (the margin is at most half),
    and the lights asked all that while."""
    run, presses = approval_run(tmp_path, factory, hold_s=None, script=asking_turn(7))
    assert [a.is_approved for a in approvals(run)] == [False]
    assert run.of_kind("mcp_approval")[0]["by"] == "no answer"
    asked_at = presses.at["awaiting_approval"]
    answered_at = run.record.approvals[0][0]
    assert 3.3 <= answered_at - asked_at <= 4.5
    assert blinks(factory, RED, asked_at, asked_at + 3.3) >= 3  # a 1 s blink, all the while
    assert "no approval" not in " ".join(note for _, note in run.record.notes)


@pytest.mark.parametrize(
    ("mcp", "approved"),
    [
        (McpToolsConfig(approve=("turn_*",)), True),
        (McpToolsConfig(approve=("turn_*",), deny=("turn_on",)), False),
    ],
)
def test_the_lists_answer_without_asking(
    tmp_path: Path, factory: MockFactory, mcp: McpToolsConfig, approved: bool
) -> None:
    run, _ = approval_run(tmp_path, factory, hold_s=0.1, mcp=mcp)
    assert [a.is_approved for a in approvals(run)] == [approved]
    assert run.of_kind("mcp_approval")[0]["by"] == "config"
    assert "awaiting_approval" not in run.states()
    assert run.of_kind("button") == []
    assert run.cues is not None and "question" not in run.cues.played


def test_the_control_surface_answers_an_approval(tmp_path: Path) -> None:
    """The control socket and MQTT reach the same call (``carry_out``)."""
    from agentpi.control.requests import carry_out, parse_request

    replies: list[dict[str, Any]] = []

    async def during(device: Device) -> None:
        while device.controls.status()["state"] != "awaiting_approval":
            await asyncio.sleep(0.05)
        bad = parse_request(b'{"command": "approve", "tool_call_id": "nope"}')
        replies.append(carry_out(bad, device.controls))
        replies.append(carry_out(parse_request(b'{"command": "deny"}'), device.controls, "mqtt"))

    run = run_conversation(
        tmp_path, script=asking_turn(), input_wav=question_wav(tmp_path), during=during
    )
    assert replies[0]["ok"] is False and "nope" in replies[0]["error"]
    assert replies[1] == {"ok": True}
    assert [a.is_approved for a in approvals(run)] == [False]
    assert run.of_kind("mcp_approval")[0]["by"] == "mqtt"


def test_the_lights_work_from_a_tool_request_to_its_response(
    tmp_path: Path, factory: MockFactory
) -> None:
    tool = ServerToolScript("lookup_stock", duration_s=1.5)
    turn = TurnScript(transcript="is it in stock", server_tool=tool, response="Yes: {result}")
    script = SimulatorScript(first_turn=TurnScript(silent=True), turns=(turn,))
    run = run_conversation(
        tmp_path, script=script, input_wav=question_wav(tmp_path, 6.0), leds=rgb_leds(factory)
    )
    times = {e["event"]: e["t"] for e in run.events if e["event"].startswith("agent_tool_")}
    working = [e for e in run.of_kind("state") if e["state"] == "working"]
    assert len(working) == 1
    after = next(e for e in run.of_kind("state") if e["t"] > working[0]["t"])
    assert times["agent_tool_request"] <= working[0]["t"] < times["agent_tool_response"]
    assert after["t"] >= times["agent_tool_response"] and after["state"] != "working"
    assert after["t"] - working[0]["t"] >= 1.4  # the tool's 1.5 s
    led = next(e for e in run.of_kind("led") if e["state"] == "working")
    assert (led["effect"], led["color"]) == ("pulse", "yellow")
    # the pulse moved the red pin all the while, through many levels
    levels = {
        round(value, 2) for t, value in timeline(factory, RED) if working[0]["t"] <= t <= after["t"]
    }
    assert len(levels) > 10


def test_a_double_press_likes_the_last_answer(tmp_path: Path, factory: MockFactory) -> None:
    """The greeting is the answer rated: its event_id goes out in the feedback."""
    presses = Presses(factory)

    def double() -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, presses.press, 0.05)
        loop.call_later(0.7, presses.press, 0.05)

    run = run_conversation(
        tmp_path,
        input_wav=save(tmp_path / "quiet.wav", silence(12.0)),
        trigger=TriggerConfig(mode="button"),
        button=button_on(factory, double_press="like"),
        on_event=on_state("listening", presses, double),
        sections={"button": ButtonConfig(pin=BUTTON, bounce_s=0.0, double_press="like")},
        silence_close_s=3.0,
    )
    feedback = run.record.of_type(m.Feedback)
    greeting = run.record.turns[0]
    assert [(f.event_id, f.score) for f in feedback] == [(greeting.event_id, "like")]
    assert [b["action"] for b in run.of_kind("button")] == ["double"]
    assert run.of_kind("feedback") == [
        {
            "t": run.of_kind("feedback")[0]["t"],
            "event": "feedback",
            "score": "like",
            "event_id": greeting.event_id,
        }
    ]
    assert run.of_kind("conversation_ended")[0]["reason"] != "button pressed"


def test_a_single_press_with_double_press_on_still_ends(
    tmp_path: Path, factory: MockFactory
) -> None:
    presses = Presses(factory)

    def single() -> None:
        asyncio.get_running_loop().call_later(0.3, presses.press, 0.05)

    run = run_conversation(
        tmp_path,
        input_wav=save(tmp_path / "quiet.wav", silence(12.0)),
        trigger=TriggerConfig(mode="button"),
        button=button_on(factory),
        on_event=on_state("speaking", presses, single),
        sections={"button": ButtonConfig(pin=BUTTON, bounce_s=0.0, double_press="like")},
    )
    assert run.record.of_type(m.Feedback) == []
    ended = run.of_kind("conversation_ended")[0]
    assert ended["reason"] == "button pressed"
    pressed_at = presses.at["speaking"] + 0.3
    end_press = run.of_kind("button")[0]
    assert end_press["action"] == "end" and end_press["t"] - pressed_at >= 0.35  # waited 0.4 s


def test_a_context_with_an_id_replaces_its_last_value(tmp_path: Path) -> None:
    """Two updates of the kitchen light: the agent keeps the latest, beside the start context;
    the on_event updates of a kind share one id."""

    async def during(device: Device) -> None:
        while device.controls.status()["state"] not in ("listening", "speaking"):
            await asyncio.sleep(0.05)
        device.controls.send_contextual_update("The kitchen light is on.", "kitchen_light")
        device.controls.send_contextual_update("The kitchen light is off.", "kitchen_light")
        device.controls.set_volume_percent(40)
        device.controls.set_volume_percent(60)

    run = run_conversation(
        tmp_path,
        input_wav=save(tmp_path / "quiet.wav", silence(8.0)),
        during=during,
        sections={
            "context": ContextConfig(
                at_start="", on_event={"volume": "The volume is now {percent} %."}
            )
        },
    )
    sent = run.record.of_type(m.ContextualUpdate)
    assert [u.context_id for u in sent] == ["kitchen_light"] * 2 + ["on_event.volume"] * 2
    assert run.record.context == {
        "kitchen_light": "The kitchen light is off.",
        "on_event.volume": "The volume is now 60.0 %.",
    }
    lines = run.of_kind("contextual_update_sent")
    assert lines[0]["context_id"] == "kitchen_light"


def test_the_simulator_sends_each_new_event_and_each_becomes_a_line(tmp_path: Path) -> None:
    """Scripted in their wire shape, checked when the script loads; the agent (every event on)
    sends them, and the device writes a line for each and keeps the context usage for status."""
    sent: list[m.ServerEvent] = [
        m.AgentReasoningResponsePart("First, the", "delta", "r-1"),
        m.RichContent("row-1", "item_card", {"title": "Lamp"}, 1),
        m.AgentToolRequest("lookup", "t9", "webhook", 1),
        m.AgentToolResponse("lookup", "t9", "webhook", False, True, 1),
        m.AgentToolResponseFullPayload("lookup", "t9", "webhook", False, '{"ok": 1}', event_id=1),
        m.McpToolCall("svc", "m9", "read_state", "loading", "2026-12-04T08:00:00Z"),
        m.McpToolCall("svc", "m9", "read_state", "success", "", result=({"type": "text"},)),
        m.McpConnectionStatus((m.McpIntegration("home", "mcp_server", True, 12),)),
        m.ContextUsage("gemini-2.0-flash", 3100, 1_000_000, 1),
        m.AsrInitiationMetadata({"model": "scribe"}),
        m.GuardrailTriggered(),
        m.InternalTurnProbability(0.42),
        m.AgentTyping(True, 1500),
        m.ExternalAgentConnected(),
        m.ExternalAgentDisconnected(),
    ]
    events = tuple(json.loads(m.encode(event)) for event in sent)
    script = SimulatorScript(first_turn=TurnScript(events=events, response="Hi."))
    usage: list[Any] = []

    async def during(device: Device) -> None:
        while device.controls.status()["context_usage"] is None:
            await asyncio.sleep(0.05)
        usage.append(device.controls.status()["context_usage"])

    run = run_conversation(
        tmp_path, script=script, input_wav=save(tmp_path / "quiet.wav", silence(6.0)), during=during
    )
    kinds = set(run.kinds())
    assert {
        "agent_reasoning",
        "rich_content",
        "agent_tool_request",
        "agent_tool_response",
        "agent_tool_result",
        "mcp_tool_call",
        "mcp_connection_status",
        "context_usage",
        "asr_initiation_metadata",
        "guardrail_triggered",
        "turn_probability",
        "agent_typing",
        "external_agent",
    } <= kinds
    assert run.of_kind("context_usage")[0]["percent"] == 0.3
    assert usage == [{"model": "gemini-2.0-flash", "tokens": 3100, "limit": 1_000_000}]
    assert [e["connected"] for e in run.of_kind("external_agent")] == [True, False]
    assert run.of_kind("protocol_error") == [] and run.of_kind("unknown_event") == []


@pytest.mark.parametrize(
    ("event", "error"),
    [({"type": "hologram"}, "not a server event"), ({"type": "ping"}, "ping.ping_event: missing")],
)
def test_a_scripted_event_is_checked_when_the_script_loads(event: Any, error: str) -> None:
    from agentpi.settings.typed import SettingsError

    with pytest.raises(SettingsError, match=error):
        TurnScript(events=(event,))


def test_two_ratings_asked_at_once_send_one(tmp_path: Path) -> None:
    answers: list[str | None] = []

    async def during(device: Device) -> None:
        while not any(e["event"] == "agent_response" for e in lines):
            await asyncio.sleep(0.05)
        answers.append(device.controls.send_feedback("like"))
        answers.append(device.controls.send_feedback("dislike"))  # before the first has run

    lines: list[dict[str, Any]] = []
    run = run_conversation(
        tmp_path,
        input_wav=save(tmp_path / "quiet.wav", silence(6.0)),
        during=during,
        on_event=lines.append,
    )
    assert answers[0] is None and answers[1] is not None and "rated already" in answers[1]
    assert [f.score for f in run.record.of_type(m.Feedback)] == ["like"]
