"""Where events leave the process for a person or a program: the transcript and JSON lines."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import stat
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import TextIO

from agentpi import events as ev
from agentpi.events import MAX_SHOWN_CHARS, DeviceEvent, dropped_line, event_line, shortened
from agentpi.line_backlog import WaitingLines
from agentpi.settings.typed import SettingsError

log = logging.getLogger("agentpi")

MAX_WAITING_LINES = 1000
MAX_WAITING_CHARS = 4 * 1024 * 1024
"""What may wait for a slow reader of the event lines, in characters (ASCII text: bytes)."""


class LineWriter:
    """Writes lines to a stream from a thread of its own, so a slow or stuck reader (a pipe
    nobody reads, a paused terminal) never holds up the event loop.

    At most ``max_lines`` lines and ``max_chars`` characters wait (a longer line only when
    nothing else does); beyond that lines are dropped and counted, and the next line
    written is preceded by an ``events_dropped`` line with the count. A reader that went away
    (a broken pipe) ends the writing quietly: the device goes on.

    Given an ``opener`` instead of a stream, the thread opens the file itself and owns it: a
    FIFO nobody reads yet cannot hold the start up, and a write that fails (a full disk) is
    reported once, on stderr, under ``name``; closing it never blocks the device's exit."""

    def __init__(
        self,
        stream: TextIO | None = None,
        max_lines: int = MAX_WAITING_LINES,
        max_chars: int = MAX_WAITING_CHARS,
        opener: Callable[[], TextIO] | None = None,
        name: str = "",
    ) -> None:
        self._stream = stream
        self._opener = opener
        self.name = name
        self._lines: queue.Queue[tuple[int, str] | None] = queue.Queue()
        self._waiting = WaitingLines(max_lines, max_chars)
        self._lock = threading.Lock()
        self._queued = 0
        self._gaps: deque[list[int]] = deque()
        """[number of the line queued last before the gap, lines dropped there]"""
        self.broken = False
        self._thread = threading.Thread(target=self._run, name="event-lines", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        with self._lock:
            return sum(count for _, count in self._gaps)

    def write(self, line: str) -> None:
        if self.broken:
            return
        with self._lock:
            if self._waiting.admit(len(line)):
                self._queued += 1
                self._lines.put_nowait((self._queued, line))
            else:
                if self._gaps and self._gaps[-1][0] == self._queued:
                    self._gaps[-1][1] += 1
                else:
                    self._gaps.append([self._queued, 1])

    def close(self, timeout: float = 1.0) -> None:
        """Write what is waiting (for up to ``timeout``), then stop."""
        self._lines.put_nowait(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            if self._stream is None:
                assert self._opener is not None
                self._stream = self._opener()
            stream = self._stream
            while (item := self._lines.get()) is not None:
                number, line = item
                self._write_gaps(stream, before=number)
                stream.write(line)
                self._write_gaps(stream, before=number + 1)
                stream.flush()
                with self._lock:
                    self._waiting.release(len(line))
            self._write_gaps(stream, before=self._queued + 1)
            stream.flush()
        except (OSError, ValueError) as exc:  # the reader went away (EPIPE), the file closed
            self.broken = True
            if self.name and not isinstance(exc, BrokenPipeError):
                reason = getattr(exc, "strerror", None) or exc
                log.warning("%s: %s; no more event lines are written there", self.name, reason)
        finally:
            if self._opener is not None and self._stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._stream.close()

    def _write_gaps(self, stream: TextIO, before: int) -> None:
        """The ``events_dropped`` lines for the gaps that fall before line ``before``."""
        while True:
            with self._lock:
                if not self._gaps or self._gaps[0][0] >= before:
                    return
                _, count = self._gaps.popleft()
            stream.write(dropped_line(count))


def stdout_is_the_journal(environ: dict[str, str] | None = None) -> bool:
    """systemd's test: ``$JOURNAL_STREAM`` names the device and inode of our stdout."""
    stream = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(1)
    except OSError:
        return False
    return stream == f"{info.st_dev}:{info.st_ino}"


def file_lines(path: str) -> LineWriter:
    """Event lines to the file ``path`` (``--events``), owned by the writer's thread; a FIFO is
    opened there too, when a reader comes, so one nobody reads cannot hold the start up."""
    name = f"--events {path}"
    try:
        fifo = stat.S_ISFIFO(os.stat(path).st_mode)
    except FileNotFoundError:
        fifo = False
    except OSError as exc:
        raise SettingsError(f"{name}: {exc.strerror or exc}") from None
    if fifo:
        return LineWriter(opener=lambda: open(path, "a", encoding="utf-8"), name=name)
    try:
        stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by its writer)
    except OSError as exc:
        raise SettingsError(f"{name}: {exc.strerror or exc}") from None
    return LineWriter(opener=lambda: stream, name=name)


class JsonLinesWriter:
    """Each event as one JSON line (``--events``), written without blocking the caller."""

    def __init__(self, lines: LineWriter) -> None:
        self.lines = lines

    def __call__(self, event: DeviceEvent) -> None:
        self.lines.write(event_line(event.record()))


JOURNAL_KINDS: tuple[type[DeviceEvent], ...] = (
    ev.Ready,
    ev.ConversationEnded,
    ev.ServerError,
    ev.ProtocolErrorSeen,
    ev.ConnectFailed,
    ev.AudioError,
)
"""What reaches the journal of a boot service: the start, one summary per conversation, and what
went wrong. Each line is written to the SD card; what was said is not (it is private too)."""


CLEAR_LINE = "\r\x1b[K"


class ConsolePrinter:
    """The conversation as a person wants to read it while it happens; text that came from the
    network is escaped, so it can never be a terminal command or forge a line. ``brief``: only
    ``JOURNAL_KINDS`` (stdout is the journal). ``live`` (a terminal): one line at the bottom is
    rewritten in place with what is still changing: the user's words so far, the agent's reply
    as it streams, then its words as the speaker plays them; without a terminal the user's
    words so far are plain lines."""

    def __init__(self, lines: LineWriter, brief: bool = False, live: bool = False) -> None:
        self.lines = lines
        self.brief = brief
        self.live = live
        self._start: float | None = None
        self._live_line = ""
        self._streamed = ""
        self._spoken: tuple[int, str] = (-1, "")
        self._tentative = ""

    @classmethod
    def on_stdout(cls, lines: LineWriter) -> ConsolePrinter:
        """Brief when stdout is the journal (a boot service), the whole transcript otherwise;
        live on a terminal."""
        return cls(lines, brief=stdout_is_the_journal(), live=sys.stdout.isatty())

    def __call__(self, event: DeviceEvent) -> None:
        if self.brief and not isinstance(event, JOURNAL_KINDS):
            return
        if self._start is None:
            self._start = event.t
        stamp = f"[{event.t - self._start:6.2f}]"
        if isinstance(event, ev.TentativeUserTranscript) and not self.live:
            if event.text and event.text != self._tentative:  # plain lines, when they change
                self._tentative = event.text
                self.lines.write(f"{stamp} you ...: {printable(event.text)}\n")
            return
        shown = self._live_line
        changing = self._changing(event)
        if changing is not None:
            if self.live:
                self._show_live(f"{stamp} {changing}")
            return
        line = describe(event)
        if line is None:
            return
        clear = CLEAR_LINE if self.live and shown else ""
        self.lines.write(f"{clear}{stamp} {line}\n{self._live_line}")

    def _changing(self, event: DeviceEvent) -> str | None:
        """The live line an event makes (None: not one of those)."""
        match event:
            case ev.TentativeUserTranscript(text=text):
                return f"you ...: {printable(text)}"
            case ev.UserTranscript():
                self._tentative = ""
                self._live_line = ""
            case ev.AgentChatResponsePart(text=text, part=part):
                # the newest words, within bounds: a reply streamed without end costs nothing more
                self._streamed = "" if part == "start" else _tail(self._streamed + text)
                return f"agent ...: {printable(self._streamed)}"
            case ev.AgentWords(text=text, event_id=event_id):
                said = self._spoken[1] if self._spoken[0] == event_id else ""
                self._spoken = (event_id, _tail(said + text))
                return f"agent (speaking): {printable(self._spoken[1])}"
            case ev.Interruption() | ev.ConversationEnded():
                self._live_line = ""
        return None

    def _show_live(self, line: str) -> None:
        self._live_line = line
        self.lines.write(f"{CLEAR_LINE}{line}")


def _tail(text: str) -> str:
    """The last ``MAX_SHOWN_CHARS`` of a line still growing."""
    return text[-MAX_SHOWN_CHARS:]


def printable(text: str) -> str:
    """``text`` with every control character (escape sequences, newlines, carriage returns,
    bells, C1 codes) written out as a visible escape, e.g. ``\\x1b``, ``\\n``; cut at
    ``MAX_SHOWN_CHARS`` (the console is not the record: `--events` keeps every word)."""
    return "".join(_escape(ch) for ch in shortened(text))


def _escape(ch: str) -> str:
    if ch.isprintable() or ch == " ":
        return ch
    escaped = repr(ch)[1:-1]
    return escaped if escaped != ch else f"\\x{ord(ch):02x}"


def describe(event: DeviceEvent) -> str | None:
    """The transcript line for an event, or None for those a person need not read."""
    match event:
        case ev.Ready(waiting_for=waiting_for, microphone=microphone, speaker=speaker):
            return (
                f"ready; a conversation starts on {', '.join(waiting_for)}\n"
                f"         microphone {microphone}, speaker {speaker}"
            )
        case ev.FetchingSignedUrl(host=host):
            return f"fetching a signed URL from {host}"
        case ev.Connecting(url=url):
            return f"connecting to {url}"
        case ev.ConversationStarted():
            return (
                f"conversation {printable(event.conversation_id)} started "
                f"(mic {event.user_input_audio_format}, speaker "
                f"{event.agent_output_audio_format})"
            )
        case ev.UserTranscript(text=text):
            return f"you:   {printable(text)}"
        case ev.AgentResponse(text=text):
            return f"agent: {printable(text)}"
        case ev.AgentResponseCorrection(corrected=corrected):
            return f"agent (cut off): {printable(corrected)}"
        case ev.Interruption():
            return "-- interrupted: playback stopped"
        case ev.ToolCall(tool_name=name, parameters=parameters):
            return f"tool call: {printable(name)}({shortened(json.dumps(parameters))})"
        case (
            ev.ServerError(message=message)
            | ev.ProtocolErrorSeen(message=message)
            | ev.ConnectFailed(message=message)
            | ev.AudioError(message=message)
        ):
            return f"!! {event.kind.replace('_', ' ')}: {printable(message)}"
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
    if event.greeting_ms is not None:
        facts.append(f"greeting after {event.greeting_ms} ms")
    if event.turn_ms_median is not None:
        facts.append(f"answers after {event.turn_ms_median} ms median, {event.turn_ms_worst} worst")
    if event.agent_id is not None:
        facts.append(f"agent {printable(event.agent_id)}")
    ident = printable(event.conversation_id or "(none)")
    reason = printable(event.reason)
    return (
        f"conversation {ident} ended after {', '.join(facts)}: {reason} ({how}){printable(error)}"
    )
