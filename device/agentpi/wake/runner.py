"""The wake word detector on its own thread, fed straight from the microphone.

Idle listening is the device's most-run code, so it never touches the event loop: the capture
thread wakes this thread once a whole 80 ms frame is there, inference runs here, and only a
detection crosses over to the loop. While a conversation runs the runner is paused (its reader
closed, nothing held); ``listen`` resumes it with the models' buffers reset, so the agent's own
voice from the last reply cannot fire it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

from agentpi.audio.backend import AudioDeviceError
from agentpi.audio.capture import Microphone
from agentpi.wake.decider import Detection
from agentpi.wake.framer import FRAME_SAMPLES, MODEL_RATE
from agentpi.wake.listener import WakeListener

log = logging.getLogger(__name__)

POLL_S = 0.5


class WakeRunner:
    def __init__(
        self,
        listener: WakeListener,
        mic: Microphone,
        on_detection: Callable[[Detection, int], None],
        on_input_end: Callable[[], None],
        on_phrase_end: Callable[[int], None] | None = None,
    ) -> None:
        """``on_detection(detection, sample)`` gets the number of the first microphone sample
        after the frame that fired, at once; ``on_phrase_end(sample)`` then the number of the
        sample where the wake phrase ended, once found (while the conversation connects). All
        callbacks are called on the runner's thread."""
        self.listener = listener
        self.mic = mic
        self.on_detection = on_detection
        self.on_input_end = on_input_end
        self.on_phrase_end = on_phrase_end
        self._go = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._fresh = True
        self.listening = threading.Event()
        """Set while a reader is open and frames are being scored."""

    @property
    def engine_name(self) -> str:
        return self.listener.engine_name

    @property
    def phrase_end_window(self) -> int:
        """How far back (source samples) before a detection its phrase's end may be found."""
        return self.listener.phrase_end_window

    def listen(self) -> None:
        """Start (or resume) listening from now on."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="wake", daemon=True)
            self._thread.start()
        self._go.set()

    def pause(self) -> None:
        self._go.clear()

    def stop(self) -> None:
        self._stopped = True
        self._go.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            self._go.wait()
            if self._stopped:
                return
            try:
                self._listen_once()
            except Exception:  # the thread must outlive a bad frame; the next resume retries
                log.exception("wake word listener failed")
                self._go.clear()

    def _listen_once(self) -> None:
        listener = self.listener
        if not self._fresh or listener.source_rate != self.mic.sample_rate:
            listener.reset(self.mic.sample_rate)
        self._fresh = False
        frame = math.ceil(FRAME_SAMPLES * self.mic.sample_rate / MODEL_RATE)
        reader = self.mic.reader()
        self.listening.set()
        try:
            while self._go.is_set() and not self._stopped:
                try:
                    chunk = reader.read_blocking(frame, timeout=POLL_S)
                except AudioDeviceError:
                    self._go.clear()  # the device recovery resumes us
                    return
                if chunk is None:
                    continue
                detection = listener.feed(chunk)
                if detection is not None:
                    if not self._go.is_set():
                        return  # paused while this frame was scored: nobody wants it now
                    self._go.clear()
                    self.on_detection(detection, reader.start + listener.consumed_samples)
                    if self.on_phrase_end is not None:
                        self.on_phrase_end(reader.start + listener.phrase_end(detection))
                    return
                if self.mic.at_end(reader.cursor):
                    self._go.clear()
                    self.on_input_end()
                    return
        finally:
            self.listening.clear()
            reader.close()
