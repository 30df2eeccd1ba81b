"""PortAudio's callback thread, kept known to Python from a stream's first callback to its last.

PortAudio calls back on a thread of its own, and PyAudio wraps every callback in
``PyGILState_Ensure``/``PyGILState_Release``. On a thread Python holds no state for, that makes
a Python thread state and frees it again each time, with its 16 KB frame stack mapped and
unmapped: two more system calls per callback, and the unmapping interrupts every other core the
process runs on to flush its TLB. That was most of what a callback cost here (a sound-card
conversation: 125 callbacks a second, 3 to 4 ms CPU per second of it).

One more ``Ensure``, held from the first callback on a thread to the callback that ends the
stream (which returns ``paAbort`` or ``paComplete`` after ``let_go``), keeps the state for the
thread's life; CPython frees it on that thread after the last callback, as it always does. Every
``Ensure`` has its ``Release`` on its own thread, as the C API asks. A stream stopped from outside
(a device that went away) leaves one state behind, about 20 KB: streams are ended through a last
callback wherever one still comes.
"""

from __future__ import annotations

import ctypes
import threading

_ensure = ctypes.pythonapi.PyGILState_Ensure
_ensure.argtypes = []
_ensure.restype = ctypes.c_int
_release = ctypes.pythonapi.PyGILState_Release
_release.argtypes = [ctypes.c_int]
_release.restype = None


class CallbackThreadState:
    """One stream's: ``hold`` at the top of every callback, ``let_go`` in the one that ends the
    stream. Called on the stream's callback thread only (one at a time)."""

    def __init__(self) -> None:
        self._thread: int | None = None
        self._state = 0

    def hold(self) -> None:
        thread = threading.get_ident()
        if self._thread != thread:  # a new callback thread: the stream (re)started
            self._state = _ensure()
            self._thread = thread

    def let_go(self) -> None:
        if self._thread == threading.get_ident():
            self._thread = None
            _release(self._state)
