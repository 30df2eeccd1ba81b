"""The MQTT link (aiomqtt): the bridge's publications out, commands in, never in the way.

The device never waits for the broker: events become publications on the event loop and go
into a bounded queue (``QUEUE_MAX``; the oldest is dropped beyond it and counted); a sender task
drains it while connected. A broker that is down at boot, restarts, or stalls only delays what
the queue holds; the link reconnects with back-off (1 s doubling to a minute, +-25 %), and every
connect publishes the whole retained state again. A session the broker gave to another client
with the same id (MQTT 5 says so) waits the longest and says so: an ``mqtt_taken_over`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from agentpi.backoff import FAILURES_FOR_LONGEST_WAIT, reconnect_delay
from agentpi.control.requests import ControlledDevice, carry_out
from agentpi.events import DeviceEvent, MqttTakenOver
from agentpi.mqtt.bridge import Command, MqttBridge, MqttCommandError, Publish
from agentpi.mqtt.settings import MAX_PACKET_BYTES, MqttConfig, broker_address, tls_context
from agentpi.settings.credentials import Secret

log = logging.getLogger(__name__)

QUEUE_MAX = 256
INCOMING_MAX = 64
"""Commands received and not yet carried out; a flood beyond it is dropped by the library."""
STABLE_S = 30.0
"""A session that lasted this long resets the back-off; a shorter one counts as a failure (a
second client with the device's client id takes the session over at every connect: without this
the two flapped, 21 take-overs in 20 s)."""
SHORT_SESSIONS_SUSPECTED = 3
SESSION_TAKEN_OVER = 0x8E
"""MQTT 5's reason code in the broker's DISCONNECT when another client logged in with this id."""
GOODBYE_S = 2.0
"""How long leaving the broker may take. aiomqtt waits for its DISCONNECT to go out without end,
and a socket the event loop lost (a broker restart racing a write) never lets it: the link then
held the device's exit for good (seen at the end of a 2,000-conversation soak)."""
RETAINED = "a retained command is not carried out (it would run again at every start); cleared"


class MqttDevice(ControlledDevice, Protocol):
    device_id: str

    def set_volume_percent(self, percent: float) -> None: ...

    def set_wake_enabled(self, on: bool) -> str | None: ...


class MqttLink:
    def __init__(
        self,
        device: MqttDevice,
        config: MqttConfig,
        password: Secret | None,
        version: str,
        queue_max: int = QUEUE_MAX,
    ) -> None:
        self.device = device
        self.config = config
        self.address = broker_address(config)
        self.password = password
        self.bridge = MqttBridge(config, device.device_id, version)
        self.client_id = config.client_id or f"agentpi-{self.bridge.node}"
        self._queue: deque[Publish] = deque(maxlen=queue_max)
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0
        self.connected = asyncio.Event()
        self.connects = 0
        self.failures = 0
        self._connected_at = float("-inf")
        self.short_sessions = 0
        """Sessions in a row that ended within ``STABLE_S`` of their start."""
        device.events.subscribe(self._on_event)

    def _on_event(self, event: DeviceEvent) -> None:
        try:
            publications = self.bridge.on_event(event, self.device.status)
        except Exception:  # MQTT is a side channel: it must never break the device's own work
            log.exception("MQTT: event %s not published", event.kind)
            return
        for publish in publications:
            self._enqueue(publish)

    def _enqueue(self, publish: Publish) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # the deque drops the oldest
        self._queue.append(publish)
        loop = self._loop
        if loop is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._ready.set()
        else:  # an event published on another thread
            loop.call_soon_threadsafe(self._ready.set)

    async def run(self) -> None:
        """Connect, serve, reconnect, until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            attempt = time.monotonic()
            try:
                await self._session()
            except (aiomqtt.MqttError, OSError, ValueError) as exc:
                self.connected.clear()
                opened = self._connected_at >= attempt
                if opened and time.monotonic() - self._connected_at >= STABLE_S:
                    self.failures = self.short_sessions = 0
                elif opened:
                    self.short_sessions += 1
                self.failures += 1
                await asyncio.sleep(self._wait_after(exc))

    def _wait_after(self, exc: BaseException) -> float:
        """The back-off after a session or connect that failed with ``exc``, said in the log
        (and, for a take-over, as an event)."""
        why = taken_over(exc, self.short_sessions)
        if why is None:
            delay = reconnect_delay(self.failures, 1.0)
            log.warning("MQTT broker %s: %s; again in %.1f s", self.address.host, exc, delay)
            return delay
        # the other client is back at once if we are: the longest wait, and a word
        self.failures = max(self.failures, FAILURES_FOR_LONGEST_WAIT)
        delay = reconnect_delay(self.failures, 1.0)
        self.device.events.publish(MqttTakenOver(self.client_id, why, round(delay, 1)))
        log.warning(
            "MQTT broker %s: %s (client id %r); give one of them another mqtt.client_id; "
            "again in %.0f s",
            self.address.host,
            why,
            self.client_id,
            delay,
        )
        return delay

    async def _session(self) -> None:
        will = self.bridge.will()
        client = aiomqtt.Client(
            **login_options(self.config, self.password),
            identifier=self.client_id,
            keepalive=self.config.keepalive_s,
            will=aiomqtt.Will(will.topic, will.payload, qos=1, retain=True),
            timeout=10,
            max_queued_incoming_messages=INCOMING_MAX,
        )
        async with logged_in(client):
            self._connected_at = time.monotonic()
            self.connects += 1
            # listening first: a controller that sees "online" may send a command at once
            for topic in self.bridge.subscriptions():
                await client.subscribe(topic, **self._subscribe_options())
            for publish in self.bridge.on_connect(self.device.status()):
                await client.publish(publish.topic, publish.payload, qos=1, retain=publish.retain)
            self.connected.set()
            sender = asyncio.ensure_future(self._send(client))
            try:
                async for message in client.messages:
                    if message.retain:
                        await self._clear_retained(client, str(message.topic))
                        continue
                    if not message.payload:  # how MQTT clears a retained message: no command
                        continue
                    try:
                        await self._command(client, str(message.topic), message.payload)
                    except aiomqtt.MqttError:
                        raise
                    except Exception:  # whatever a payload does, the link goes on serving
                        log.exception("MQTT: command on %s failed", message.topic)
            finally:
                await stopped(sender)

    def _subscribe_options(self) -> dict[str, Any]:
        """MQTT 5: the broker sends no retained message on subscribing (retain handling 2);
        3.1.1 has no such option, and a retained command is recognised by its flag."""
        if self.config.protocol == "3.1.1":
            return {"qos": 1}
        return {"options": SubscribeOptions(qos=1, retainHandling=2)}

    async def _clear_retained(self, client: aiomqtt.Client, topic: str) -> None:
        log.warning("MQTT: %s: %s", topic, RETAINED)
        await client.publish(topic, b"", qos=1, retain=True)  # an empty retained one clears it
        reply = self.bridge.reply({"ok": False, "error": RETAINED, "topic": topic})
        await client.publish(reply.topic, reply.payload, qos=1)

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            await self._ready.wait()
            while self._queue:
                publish = self._queue[0]
                await client.publish(publish.topic, publish.payload, qos=0, retain=publish.retain)
                self._queue.popleft()  # only once it went out: a lost connection keeps it
            self._ready.clear()

    async def _command(self, client: aiomqtt.Client, topic: str, payload: Any) -> None:
        raw = payload if isinstance(payload, bytes) else str(payload or "").encode()
        try:
            command = self.bridge.command(topic, raw)
        except MqttCommandError as exc:
            answer: dict[str, Any] = {"ok": False, "error": str(exc), "topic": topic}
        else:
            answer = self._carry_out(command)
        reply = self.bridge.reply(answer)
        await client.publish(reply.topic, reply.payload, qos=1)

    def _carry_out(self, command: Command) -> dict[str, Any]:
        if command.request is not None:
            return carry_out(command.request, self.device, origin="mqtt")
        if command.volume_percent is not None:
            self.device.set_volume_percent(command.volume_percent)
            return {"ok": True}
        error = self.device.set_wake_enabled(bool(command.wake_on))
        if error is None:
            self._enqueue(self.bridge.wake_changed(bool(command.wake_on)))
            return {"ok": True}
        return {"ok": False, "error": error}


def taken_over(exc: BaseException, short_sessions: int) -> str | None:
    """Why the session looks taken over by another client with the device's id, or None. MQTT 5
    brokers that say so (reason 0x8E) are believed at once; others (Mosquitto 2.0 just closes
    the socket, as every 3.1.1 broker does) are suspected after a run of short sessions."""
    seen: BaseException | None = exc
    while seen is not None:  # aiomqtt's error is caused by the one that carries the code
        if isinstance(seen, aiomqtt.MqttCodeError) and seen.rc == SESSION_TAKEN_OVER:
            return "the broker gave the session to another client that logged in with this id"
        seen = seen.__cause__
    if short_sessions >= SHORT_SESSIONS_SUSPECTED:
        return (
            f"the broker ended {short_sessions} sessions in a row within {STABLE_S:g} s of "
            "their start: another client may be logging in with this id"
        )
    return None


def login_options(config: MqttConfig, password: Secret | None) -> dict[str, Any]:
    """aiomqtt.Client's arguments for reaching and logging in to the broker (the link and the
    doctor alike)."""
    address = broker_address(config)
    options: dict[str, Any] = {
        "hostname": address.host,
        "port": address.port,
        "username": config.username or None,
        "password": password.reveal() if password else None,
        "tls_context": tls_context(config) if address.tls else None,
    }
    if config.protocol == "3.1.1":
        return {**options, "protocol": aiomqtt.ProtocolVersion.V311}
    # version 5 lets the device say how large a packet it takes: the broker drops larger ones
    # for it instead of delivering megabytes that only get refused once they are in memory
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.MaximumPacketSize = MAX_PACKET_BYTES
    return {**options, "protocol": aiomqtt.ProtocolVersion.V5, "properties": properties}


async def stopped(task: asyncio.Future[Any], patience_s: float = GOODBYE_S) -> None:
    """Cancel ``task`` until it has ended. Once is not enough: Python 3.11's asyncio.wait_for,
    which aiomqtt waits with, can swallow a cancellation that comes just as what it waits for
    is done (the task then went on for good, and so did the link, at the end of soaks). Never
    raises what ``task`` raised, nor swallows a cancellation of the caller's."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=patience_s)
    if not task.cancelled():
        task.exception()  # retrieved: asyncio does not log it as never looked at


@contextlib.asynccontextmanager
async def logged_in(client: aiomqtt.Client) -> AsyncIterator[aiomqtt.Client]:
    """``async with client``, but leaving takes ``GOODBYE_S`` at most, also when cancelled."""
    await client.__aenter__()
    failure: BaseException | None = None
    try:
        yield client
    except BaseException as exc:
        failure = exc
        raise
    finally:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GOODBYE_S):
                await client.__aexit__(
                    None if failure is None else type(failure),
                    failure,
                    None if failure is None else failure.__traceback__,
                )
