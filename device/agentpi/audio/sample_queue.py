"""Audio waiting to be played: blocks in, any number of samples out, in order."""

from __future__ import annotations

from collections import deque

from agentpi.audio.convert import Int16Array


class SampleQueue:
    def __init__(self) -> None:
        self._blocks: deque[Int16Array] = deque()
        self.samples = 0

    def __len__(self) -> int:
        return self.samples

    def put(self, block: Int16Array) -> None:
        if len(block):
            self._blocks.append(block)
            self.samples += len(block)

    def take_into(self, out: Int16Array) -> int:
        """Fill ``out`` from the front of the queue; returns how many samples it filled (the
        rest of ``out`` is left as it was)."""
        filled = 0
        while filled < len(out) and self._blocks:
            head = self._blocks[0]
            take = min(len(head), len(out) - filled)
            out[filled : filled + take] = head[:take]
            filled += take
            if take == len(head):
                self._blocks.popleft()
            else:
                self._blocks[0] = head[take:]
        self.samples -= filled
        return filled

    def clear(self) -> int:
        """Drop everything; returns how many samples were dropped."""
        dropped = self.samples
        self._blocks.clear()
        self.samples = 0
        return dropped
