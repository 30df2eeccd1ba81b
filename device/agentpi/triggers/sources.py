"""What starts a conversation: each source is an object behind one small interface.

The device arms every source while it waits, idle, and disarms them all once one has fired; a
source hands its ``Trigger`` to ``fire`` on the event loop (None: the input has ended, as a
``file:`` microphone does). Sources that run on threads of their own (the wake word, gpiozero's
button) cross to the loop themselves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentpi.audio.capture import MicReader, Microphone
from agentpi.config.document import Config
from agentpi.control.requests import Opening
from agentpi.system.net import host_of
from agentpi.triggers.button import ButtonInput
from agentpi.wake.decider import Detection
from agentpi.wake.listener import WakeListener
from agentpi.wake.runner import WakeRunner
from agentpi.wake.settings import model_label

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trigger:
    """What started a conversation."""

    source: str  # "wake" | "button" | "immediate" | "control"
    detail: dict[str, Any] = field(default_factory=dict)
    start: int | None = None
    """The microphone sample the conversation's audio begins with (None: from the trigger on)."""
    user_message: str | None = None
    """Typed text to open the conversation with (`agentpi say` while idle)."""
    opening: Opening | None = None
    at: float = field(default_factory=time.monotonic)
    """When it fired (the wait for the greeting starts here)."""
    phrase_end: concurrent.futures.Future[int] | None = None
    """Where the wake phrase ended (a microphone sample at or after ``start``), found on the wake
    thread while the conversation connects: the audio sent begins there."""

    async def skip_wake_phrase(self, reader: MicReader, wait_s: float) -> None:
        """Start the upload where the wake phrase ended (the wake thread finds it while the
        socket opens; if it takes too long, the whole search window goes, phrase tail and all)."""
        if self.phrase_end is None:
            return
        try:
            sample = await asyncio.wait_for(asyncio.wrap_future(self.phrase_end), wait_s)
        except TimeoutError:
            log.warning("the end of the wake phrase was not found in time; sending from earlier")
            return
        reader.skip_to(sample)


Fire = Callable[[Trigger | None], None]


class ButtonListener(Protocol):
    """What a running conversation does with the button (toggle: end; hold: push-to-talk)."""

    def button_pressed(self) -> None: ...

    def button_released(self) -> None: ...


class TriggerSource:
    """The interface; every method but ``start`` may be left as it is."""

    def start(self, loop: asyncio.AbstractEventLoop, fire: Fire) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        """What the user does to start a conversation this way (the transcript's ready line)."""
        raise NotImplementedError

    def arm(self) -> None:
        """The device is idle and waits: firing now starts a conversation."""

    def disarm(self) -> None:
        """A conversation is starting (from this source or another): fire no more."""

    def in_conversation(self, conversation: ButtonListener | None) -> None:
        """A conversation runs (the source's input goes to it), or no longer (None)."""

    def conversation_over(self, delay_s: float) -> None:
        """A conversation ended; the next automatic one may start ``delay_s`` from now."""

    def close(self) -> None:
        """Release what the source holds (threads, pins, timers)."""


class WakeTrigger(TriggerSource):
    """The wake word, scored on its own thread from the shared microphone."""

    def __init__(self, listener: WakeListener, mic: Microphone, config: Config) -> None:
        self._mic = mic
        self._send_wake_word = config.audio.send_wake_word
        self._preroll_s = config.audio.preroll_s
        self._phrases = ", ".join(config.wake.models)
        self._agents = {label: entry.agent_id for label, entry in config.wake.agents.items()}
        self._runner = WakeRunner(
            listener, mic, self._detected, self._input_ended, self._phrase_ended
        )
        self._phrase_end: concurrent.futures.Future[int] | None = None
        self.enabled = True
        """Off (over MQTT, say): armed or not, the wake word starts nothing."""
        self.muted = False
        """The microphone is muted: nothing is scored."""
        self.labels = tuple(model_label(model) for model in config.wake.models)
        self.chosen: str | None = None
        """The one wake word that starts a conversation now (None: any of them)."""
        self._armed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fire: Fire | None = None
        self._generation = 0

    @property
    def engine_name(self) -> str:
        return self._runner.engine_name

    def start(self, loop: asyncio.AbstractEventLoop, fire: Fire) -> None:
        self._loop = loop
        self._fire = fire

    def describe(self) -> str:
        return f"the wake word ({self._phrases}; {self.engine_name})"

    def arm(self) -> None:
        self._armed = True
        self._follow()

    def disarm(self) -> None:
        self._armed = False
        self._follow()

    def set_enabled(self, on: bool) -> None:
        self.enabled = on
        self._follow()

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        self._follow()

    def choose(self, label: str | None) -> None:
        """Only ``label`` starts a conversation from now on (None: any wake word)."""
        self.chosen = label

    def _follow(self) -> None:
        """Listen while armed, enabled and not muted; otherwise pause, and a detection still in
        flight is stale."""
        if self._armed and self.enabled and not self.muted:
            self._runner.listen()
        else:
            self._runner.pause()
            self._generation += 1

    def close(self) -> None:
        self._runner.stop()

    def _detected(self, detection: Detection, start: int) -> None:
        """On the wake thread: hand the detection to the loop (a wake word not chosen now is
        heard and let go)."""
        if self.chosen is not None and detection.model != self.chosen:
            self._follow()  # the runner paused for it: listen on
            return
        detail = {
            "model": detection.model,
            "score": round(detection.score, 3),
            "audio_s": round(detection.audio_s, 3),
        }
        if self._agents.get(detection.model):
            detail["agent_id"] = self._agents[detection.model]
        if self._send_wake_word:
            start = max(self._mic.oldest, start - int(self._preroll_s * self._mic.sample_rate))
            self._to_loop(Trigger("wake", detail, start), self._generation)
            return
        # held from as far back as the phrase's end can be; the reader skips on once it is known
        self._phrase_end = concurrent.futures.Future()
        earliest = max(self._mic.oldest, start - self._runner.phrase_end_window)
        trigger = Trigger("wake", detail, earliest, phrase_end=self._phrase_end)
        self._to_loop(trigger, self._generation)

    def _phrase_ended(self, sample: int) -> None:
        """On the wake thread, a little after ``_detected``."""
        if self._phrase_end is not None:
            self._phrase_end.set_result(sample)
            self._phrase_end = None

    def _input_ended(self) -> None:
        self._to_loop(None, self._generation)

    def _to_loop(self, trigger: Trigger | None, generation: int) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop has closed: we are shutting down
            self._loop.call_soon_threadsafe(self._deliver, trigger, generation)

    def _deliver(self, trigger: Trigger | None, generation: int) -> None:
        # something else (the button) started a conversation while this frame was scored
        if generation == self._generation and self._fire is not None:
            self._fire(trigger)


class ButtonTrigger(TriggerSource):
    """A press while idle starts a conversation; during one, presses go to the conversation
    (toggle: end it; hold: push-to-talk)."""

    def __init__(self, button: ButtonInput, config: Config) -> None:
        self.button = button
        self._label = f"the button (GPIO {config.button.pin}, {config.trigger.button_mode})"
        self._conversation: ButtonListener | None = None
        self._armed = False
        self._fire: Fire | None = None

    def start(self, loop: asyncio.AbstractEventLoop, fire: Fire) -> None:
        self._fire = fire
        self.button.attach(loop, self._pressed, self._released)

    def describe(self) -> str:
        return self._label

    def arm(self) -> None:
        self._armed = True

    def disarm(self) -> None:
        self._armed = False

    def close(self) -> None:
        self.button.close()

    def in_conversation(self, conversation: ButtonListener | None) -> None:
        self._conversation = conversation

    def _pressed(self) -> None:
        if self._conversation is not None:
            self._conversation.button_pressed()
        elif self._armed and self._fire is not None:
            self._fire(Trigger("button"))
        # connecting or showing an error: a press there would only queue a stale conversation

    def _released(self) -> None:
        if self._conversation is not None:
            self._conversation.button_released()


ROUTE_CHECK_S = 1.0


def has_route(host: str, port: int) -> bool:
    """Whether this machine can reach ``host`` now, as far as it knows without asking anyone:
    its name resolves and the kernel has a route to it (a UDP "connect" sends nothing)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return False
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            try:
                probe.connect(address)
                return True
            except OSError:
                continue
    return False


class ImmediateTrigger(TriggerSource):
    """Kiosk: a conversation at once, and again a pause after each ends (longer after failures).

    With ``agent_url``, a pause is cut short when the network comes back: a route to the agent's
    host missing at one check and there at the next. A check that finds the route there ends
    the watch: the pause is then not about the network (no name lookup a second for a minute).
    A kiosk that booted before its Wi-Fi otherwise waited out its back-off (16 s more, after a
    20 s wait)."""

    def __init__(self, agent_url: str = "") -> None:
        self.route_to = host_of(agent_url)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fire: Fire | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._watch: asyncio.Task[None] | None = None
        self._route_missing = False
        """At the last check, across pauses: an attempt may fall between the last check that
        missed the route and the network's return."""

    def start(self, loop: asyncio.AbstractEventLoop, fire: Fire) -> None:
        self._loop = loop
        self._fire = fire
        fire(Trigger("immediate"))

    def describe(self) -> str:
        return "its own (kiosk: now, and again after each)"

    def conversation_over(self, delay_s: float) -> None:
        assert self._loop is not None
        self._pending = self._loop.call_later(delay_s, self._again)
        if self.route_to is not None and delay_s > ROUTE_CHECK_S:
            self._watch = self._loop.create_task(self._until_the_network_returns(self.route_to))

    def _again(self) -> None:
        assert self._fire is not None
        self.close()
        self._fire(Trigger("immediate"))

    async def _until_the_network_returns(self, route_to: tuple[str, int]) -> None:
        while True:
            await asyncio.sleep(ROUTE_CHECK_S)
            route = await asyncio.to_thread(has_route, *route_to)
            came_back, self._route_missing = route and self._route_missing, not route
            if came_back:
                self._watch = None  # _again must not cancel the task it runs in
                self._again()
            if route:  # the network is there: the pause is about something else
                return

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None


class ControlTrigger(TriggerSource):
    """`agentpi start` / `agentpi say` over the control socket, or their MQTT commands (the
    device checks it may)."""

    def __init__(self, socket: bool = True, mqtt: bool = False) -> None:
        self._fire: Fire | None = None
        doors = ["the control socket (agentpi start / say)"] if socket else []
        self._label = " or ".join([*doors, *(["MQTT (start / say)"] if mqtt else [])])

    def start(self, loop: asyncio.AbstractEventLoop, fire: Fire) -> None:
        self._fire = fire

    def describe(self) -> str:
        """Empty when neither the socket nor MQTT is on: nothing can ask then."""
        return self._label

    def request(self, user_message: str | None = None, opening: Opening | None = None) -> None:
        if self._fire is not None:
            self._fire(Trigger("control", user_message=user_message, opening=opening))
