"""One conversation at a time, from its trigger to idle again: the cue, the connect (which a
stop cancels), the run, and what it leaves behind (the summary, the failures in a row)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from agentpi import events as ev
from agentpi.agent.client import AgentConnectError, AgentConnection, open_agent
from agentpi.audio.backend import AudioSink
from agentpi.audio.capture import MicReader, Microphone
from agentpi.audio.gating import MicGate, OpenMic
from agentpi.config.document import Config, for_wake_word, with_first_message
from agentpi.device.conversation import ConversationRun, RunContext
from agentpi.device.display import StateDisplay
from agentpi.device.initiation import event_context
from agentpi.device.retry import RetryPolicy
from agentpi.device.trigger_loop import TriggerLoop
from agentpi.device.volume import Volume
from agentpi.events import DeviceEvent, EventBus
from agentpi.protocol.actions import ConversationEnded
from agentpi.protocol.failures import connect_failure, failure_of
from agentpi.protocol.messages import ContextUsage
from agentpi.protocol.session import NORMAL_CLOSE
from agentpi.protocol.turns import TurnTimer
from agentpi.settings.credentials import AgentCredentials
from agentpi.states import DeviceState
from agentpi.tools.registry import ToolRegistry
from agentpi.triggers.sources import Trigger

PHRASE_END_WAIT_S = 2.0
"""How long the first audio waits for the wake thread's answer (tens of ms, usually)."""


class ConversationRunner:
    def __init__(
        self,
        config: Config,
        device_id: str,
        mic: Microphone,
        sink: AudioSink,
        events: EventBus,
        tools: ToolRegistry,
        display: StateDisplay,
        retry: RetryPolicy,
        volume: Volume,
        triggers: TriggerLoop,
        credentials: AgentCredentials,
    ) -> None:
        self.config = config
        self.device_id = device_id
        self.mic = mic
        self.sink = sink
        self.events = events
        self.tools = tools
        self.display = display
        self.retry = retry
        self.volume = volume
        self.triggers = triggers
        self.credentials = credentials
        self.choose_gate: Callable[[], MicGate] = OpenMic
        """How the microphone is heard in the next conversation (the device sets it up once the
        sound devices are open: the echo set-up, push-to-talk)."""
        self.mic_ok = asyncio.Event()
        """Set while the microphone works (the device's recovery owns it)."""
        self.run: ConversationRun | None = None
        self.no_run = asyncio.Event()
        self.no_run.set()
        self.conversations = 0
        self.last_turns: TurnTimer | None = None
        """The last conversation's turn latencies (for status)."""
        self.last_context_usage: ContextUsage | None = None
        self.stopping: str | None = None
        self._connecting: asyncio.Future[AgentConnection] | None = None
        if config.context.on_event:
            events.subscribe(self._context_for_event)

    async def converse(self, trigger: Trigger | None = None) -> ConversationEnded:
        """One whole conversation, from the trigger to idle again."""
        trigger = trigger or Trigger("immediate")
        self.conversations += 1
        # from the trigger on (or where the wake word ended): held while the socket opens
        reader = self.mic.reader(trigger.start)
        try:
            return await self._converse(trigger, reader)
        finally:
            reader.close()

    def stop(self, reason: str) -> None:
        """End the conversation with a close frame (or its connect at once); start no other."""
        self.stopping = reason
        if self.run is not None:
            self.run.request_end(reason)
        self.cancel_connect(reason)

    def cancel_connect(self, reason: str) -> bool:
        """A conversation still connecting (a signed-URL fetch, the handshake) ends now."""
        return self._connecting is not None and self._connecting.cancel(reason)

    async def _converse(self, trigger: Trigger, reader: MicReader) -> ConversationEnded:
        if trigger.source == "wake":
            self.display.show(DeviceState.WAKE_DETECTED)
            await self.display.cue("wake")
        self.display.show(DeviceState.CONNECTING)
        started = time.monotonic()
        config = self.config
        if trigger.source == "wake" and "model" in trigger.detail:
            config = for_wake_word(config, trigger.detail["model"])
        if trigger.opening is not None and trigger.opening.first_message is not None:
            config = with_first_message(config, trigger.opening.first_message)
        connection = await self._connect(config)
        if isinstance(connection, ConversationEnded):
            return connection
        self.events.publish(ev.Connected())
        if self.stopping is not None:  # stopped while the socket opened: say goodbye at once
            await connection.close(NORMAL_CLOSE, self.stopping)
            return ConversationEnded(NORMAL_CLOSE, self.stopping, "client")
        await trigger.skip_wake_phrase(reader, PHRASE_END_WAIT_S)
        run = ConversationRun(
            self._run_context(config),
            connection,
            reader,
            trigger.user_message,
            trigger.at,
            trigger.opening,
            trigger.source,
        )
        self.run = run
        self.no_run.clear()
        self.triggers.in_conversation(run)
        try:
            ended = await run.run()
        finally:
            self.run = None
            self.no_run.set()
            self.triggers.in_conversation(None)
        self.events.publish(
            run.summary(ended, time.monotonic() - started, trigger.detail.get("agent_id"))
        )
        self.last_turns = run.turn_timer
        self.last_context_usage = run.session.context_usage
        self.retry.conversation_ended(run.session.user_turns, ended)
        if self.stopping is not None:
            return ended  # no cue, no hold: a stop must be quick
        failure = failure_of(ended)
        if failure is None or failure.cue == "end":
            await self.display.cue("end")
        elif self.mic_ok.is_set():
            await self.display.show_error(offline=failure.shows is DeviceState.OFFLINE)
        return ended

    async def _connect(self, config: Config) -> AgentConnection | ConversationEnded:
        """The open connection, or how the conversation ended before it had one."""
        credentials = self.credentials
        opening = open_agent(
            config.agent, credentials.api_key, credentials.endpoint_token, self.events.publish
        )
        self._connecting = asyncio.ensure_future(opening)
        try:
            return await self._connecting
        except asyncio.CancelledError as stopped:  # by `stop` or a signal, with its reason
            if asyncio.current_task().cancelling() or not stopped.args:  # type: ignore[union-attr]
                raise
            return ConversationEnded(None, str(stopped.args[0]), "client")
        except AgentConnectError as exc:
            failure = connect_failure(exc.status, exc.offline)
            self.retry.connect_failed(failure)
            self.events.publish(
                ev.ConnectFailed(str(exc), exc.offline, self.retry.failures, failure.name)
            )
            await self.display.show_error(offline=failure.shows is DeviceState.OFFLINE)
            return ConversationEnded(None, "connect failed", "client", str(exc))
        finally:
            self._connecting = None

    def _run_context(self, config: Config) -> RunContext:
        return RunContext(
            config=config,
            device_id=self.device_id,
            events=self.events,
            mic=self.mic,
            sink=self.sink,
            tools=self.tools,
            gate=self.choose_gate(),
            show=self.display.show,
            ask=self.display.ask,
            muted=lambda: self.display.muted,
            volume_gain=lambda: self.volume.gain,
            mic_ok=self.mic_ok.is_set,
        )

    def context_usage(self) -> dict[str, object] | None:
        """How full the agent's LLM context is: the running conversation's, or the last's."""
        usage = self.run.session.context_usage if self.run is not None else None
        usage = usage or self.last_context_usage
        if usage is None:
            return None
        return {
            "model": usage.model,
            "tokens": usage.context_tokens,
            "limit": usage.context_limit_tokens,
        }

    def _context_for_event(self, event: DeviceEvent) -> None:
        run = self.run
        if run is None:
            return
        text = event_context(self.config.context, event.record())
        if text:  # one id per kind: the agent keeps the latest, not every one
            run.from_device(text, typed=False, context_id=f"on_event.{event.kind}")
