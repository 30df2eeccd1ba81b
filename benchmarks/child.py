"""What both client processes of the SDK comparison share: the harness's commands on stdin, the
lines they answer on stdout, and the record they leave behind.

The harness sends ``start`` (the trigger), ``speak`` (the user asks the question) and ``exit``;
a client answers ``ready`` once it can take a trigger and ``ended`` when its conversation is
over, then writes what its microphone and speaker did (JSON) for the harness to measure.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path

from benchmarks.rig import RoomMicrophone, SpeakerLog


def tell(line: str) -> None:
    print(line, flush=True)


class Commands:
    """The harness's lines, read on a thread (stdin is a pipe) and handed to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._lines: asyncio.Queue[str] = asyncio.Queue()

        def read() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(self._lines.put_nowait, line.strip())
            loop.call_soon_threadsafe(self._lines.put_nowait, "exit")

        threading.Thread(target=read, name="commands", daemon=True).start()

    async def next(self) -> str:
        return await self._lines.get()


def write_record(path: Path, mic: RoomMicrophone | None, speaker: SpeakerLog) -> None:
    record = {
        "origin": mic.started_at if mic is not None else None,
        "question_at": mic.question_at if mic is not None else None,
        "blocks": speaker.blocks,
    }
    path.write_text(json.dumps(record))
