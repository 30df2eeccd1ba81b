"""agentpi in the SDK comparison: the device ``agentpi run`` assembles (``assemble_device``, from
the config the harness wrote) on the rig's microphone and speaker. ``start`` calls
``Device.start_conversation``, as the control socket does.

    python -m benchmarks.agentpi_client CONFIG ROOM QUESTION RECORD
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from agentpi.audio.capture import Microphone
from agentpi.audio.file import FileSink
from agentpi.config.document import load_config
from agentpi.device.assembly import assemble_device
from agentpi.events import EventBus, EventRecord, as_records
from benchmarks.child import Commands, tell, write_record
from benchmarks.rig import RoomMicrophone, SpeakerLog


async def main(config_path: Path, room: Path, question: Path, record: Path) -> int:
    config = load_config(config_path)
    commands = Commands(asyncio.get_running_loop())
    stream = RoomMicrophone(room, question, config.audio.chunk_ms, origin=time.monotonic())
    mic = Microphone(lambda: stream, preroll_s=config.audio.preroll_s)
    mic.prepare(stream)
    sink = FileSink(config.audio.output.removeprefix("file:"))
    speaker = SpeakerLog(sink)
    events = EventBus()

    def on_event(event: EventRecord) -> None:
        if event["event"] == "conversation_ended":
            tell("ended")

    events.subscribe(as_records(on_event))
    device = assemble_device(config, events, mic, sink)
    running = asyncio.ensure_future(device.run(once=True))
    ready = asyncio.ensure_future(device.ready.wait())
    await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        return running.result()
    tell("ready")
    while (command := await commands.next()) != "exit":
        if command == "start":
            refused = device.controls.start_conversation()
            if refused is not None:
                tell(f"refused: {refused}")
        elif command == "speak":
            stream.say()
    code = await running
    write_record(record, stream, speaker)
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*(Path(arg) for arg in sys.argv[1:5]))))
