"""Lines waiting for a slow reader, bounded in number and in size.

A reader that stops reading (a paused terminal, a control-socket subscriber, a pipe nobody
drains) must not let the lines meant for it grow without end: forty 8 MB answers from a server
once took the device to 502 MB that way, under a bound of 1000 lines. Each backlog therefore
has both bounds; a line past either is dropped, and the writer counts it and says so.
"""

from __future__ import annotations


class WaitingLines:
    """The count and size of what waits. A line is admitted while both stay within their
    bounds, and always when nothing waits: a single line larger than ``max_size`` (a record of
    a long answer) still reaches a reader that keeps up, and memory holds at most one of it."""

    def __init__(self, max_lines: int, max_size: int) -> None:
        self.max_lines = max_lines
        self.max_size = max_size
        self.lines = 0
        self.size = 0

    def admit(self, size: int) -> bool:
        """Count a line of ``size`` in, if it fits; False: drop it."""
        if self.lines and (self.lines >= self.max_lines or self.size + size > self.max_size):
            return False
        self.lines += 1
        self.size += size
        return True

    def release(self, size: int) -> None:
        """A line of ``size`` was taken by its reader."""
        self.lines -= 1
        self.size -= size
