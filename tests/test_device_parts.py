"""The device's parts, each alone: no sockets, no sound card, no conversation."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agentpi.audio.capture import Microphone
from agentpi.audio.file import FileSource
from agentpi.backoff import FAILURES_FOR_LONGEST_WAIT
from agentpi.config.document import ButtonConfig, Config, TriggerConfig
from agentpi.control.settings import ControlConfig
from agentpi.device.display import StateDisplay
from agentpi.device.retry import RetryPolicy
from agentpi.device.trigger_loop import TRIGGER_QUEUE, TriggerLoop
from agentpi.device.volume import MAX_GAIN, Volume
from agentpi.events import EventBus, EventRecord, as_records
from agentpi.mqtt.settings import MqttConfig
from agentpi.protocol.actions import ConversationEnded
from agentpi.protocol.failures import connect_failure
from agentpi.states import DeviceState, InvalidTransition
from agentpi.system.systemd_notify import SystemdNotifier
from agentpi.triggers.button import ButtonInput
from agentpi.triggers.sources import Trigger
from tests.speech import save, silence

CUT = ConversationEnded(None, "no close frame", "client", "the link dropped")
CLEAN = ConversationEnded(1000, "user silent", "client")


def recorded(bus: EventBus) -> list[EventRecord]:
    seen: list[EventRecord] = []
    bus.subscribe(as_records(seen.append))
    return seen


def test_the_retry_pause_doubles_with_failures_and_a_clean_conversation_resets_it() -> None:
    bus = EventBus()
    seen = recorded(bus)
    retry = RetryPolicy(bus, pause_s=2.0)
    assert retry.next_pause() == 2.0 and retry.refusal() is None and seen == []
    pauses = []
    for _ in range(3):
        retry.conversation_ended(0, CUT)
        pauses.append(retry.next_pause())
    for doublings, pause in enumerate(pauses):  # 2, 4, 8 s, each +-25 % (jitter)
        assert 0.75 <= pause / (2.0 * 2**doublings) <= 1.25
    assert [e["failures"] for e in seen if e["event"] == "retry"] == [1, 2, 3]
    refusal = retry.refusal()
    assert refusal is not None and refusal.startswith("the last 3 conversation(s) failed")
    retry.conversation_ended(0, CLEAN)
    assert retry.failures == 0 and retry.next_pause() == 2.0 and retry.refusal() is None


def test_a_failed_connect_counts_as_a_failure() -> None:
    retry = RetryPolicy(EventBus(), pause_s=0.0)
    retry.connect_failed(connect_failure(None, offline=True))
    retry.connect_failed(connect_failure(502, offline=False))
    assert retry.failures == 2 and retry.next_pause() >= 1.5
    retry.connect_failed(connect_failure(401, offline=False))  # a refused key: the longest wait
    assert retry.failures == FAILURES_FOR_LONGEST_WAIT


def test_volume_changes_in_percent_of_the_configured_one_within_bounds() -> None:
    bus = EventBus()
    seen = recorded(bus)
    volume = Volume(0.5, bus)
    volume.set_percent(50)
    assert volume.gain == pytest.approx(0.25) and volume.percent == 50
    volume.set_percent(-10)
    assert volume.gain == 0
    loud = Volume(3.0, bus)
    loud.set_percent(1000)  # 200 % at most, and never past the config's ceiling
    assert loud.gain == MAX_GAIN
    assert [e["percent"] for e in seen] == [50, 0, pytest.approx(133.3)]


def test_the_display_says_each_change_once_and_refuses_an_impossible_one(tmp_path: Path) -> None:
    bus = EventBus()
    seen = recorded(bus)
    mic = Microphone.of(FileSource(save(tmp_path / "mic.wav", silence(0.2))))
    display = StateDisplay(bus, SystemdNotifier({}), None, None, mic, -40.0)  # type: ignore[arg-type]
    display.show(DeviceState.CONNECTING)
    display.show(DeviceState.CONNECTING)
    assert [e["state"] for e in seen] == ["connecting"]
    with pytest.raises(InvalidTransition):
        display.show(DeviceState.SPEAKING)
    assert display.state is DeviceState.CONNECTING


class Pressed:
    def __init__(self) -> None:
        self.presses: list[str] = []

    def button_pressed(self) -> None:
        self.presses.append("pressed")

    def button_released(self) -> None:
        self.presses.append("released")


def test_the_trigger_loop_bounds_its_queue_routes_the_button_and_stops(tmp_path: Path) -> None:
    factory = MockFactory()
    pin = factory.pin(5)
    config = Config(trigger=TriggerConfig(mode="button"), button=ButtonConfig(pin=5, bounce_s=0))
    mic = Microphone.of(FileSource(save(tmp_path / "mic.wav", silence(0.2))))
    button = ButtonInput(config.button, pin_factory=factory)

    async def scenario() -> tuple[list[Trigger | None], list[str], Trigger | None]:
        loop = TriggerLoop(config, mic, button=button)
        async with contextlib.AsyncExitStack() as stack:
            loop.start(asyncio.get_running_loop(), stack)
            for _ in range(TRIGGER_QUEUE + 3):  # a flood of requests: the rest are dropped
                loop.control.request("hello")
            taken = [await loop.next() for _ in range(TRIGGER_QUEUE)]
            conversation = Pressed()
            loop.in_conversation(conversation)
            pin.drive_low()
            pin.drive_high()
            while len(conversation.presses) < 2:  # they cross from gpiozero's thread
                await asyncio.sleep(0.01)
            loop.in_conversation(None)
            loop.stop()
            loop.control.request("after the stop")
            return taken, conversation.presses, await loop.next()

    taken, presses, after_stop = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert [t.source for t in taken if t is not None] == ["control"] * TRIGGER_QUEUE
    assert presses == ["pressed", "released"]
    assert after_stop is None


@pytest.mark.parametrize(
    ("socket", "mqtt", "said"),
    [
        (True, False, ["the control socket (agentpi start / say)"]),
        (False, True, ["MQTT (start / say)"]),
        (False, False, []),
    ],
)
def test_the_ready_line_names_only_the_doors_that_are_open(
    tmp_path: Path, socket: bool, mqtt: bool, said: list[str]
) -> None:
    """It said "the control socket" with [control] enabled = false, too."""
    config = Config(
        trigger=TriggerConfig(mode="control"),
        control=ControlConfig(enabled=socket),
        mqtt=MqttConfig(enabled=mqtt, url="mqtts://broker.lan"),
    )
    mic = Microphone.of(FileSource(save(tmp_path / "mic.wav", silence(0.2))))
    assert TriggerLoop(config, mic).describe() == said
