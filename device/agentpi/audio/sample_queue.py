"""Audio waiting to be played: blocks in (resampled to the speaker's rate), any number of samples
out, in order, and never more than ``max_s`` of it.

A server may stream a reply far faster than real time, or never stop; what is queued is bounded
so memory is. At the bound the newest audio is refused (dropped and counted): the speaker keeps
playing what it has, and the conversation's own limits end a server that will not stop.
"""

from __future__ import annotations

from collections import deque

from agentpi.audio.convert import Int16Array, Resampler

DEFAULT_MAX_BACKLOG_S = 120.0


class SampleQueue:
    def __init__(self, max_s: float = DEFAULT_MAX_BACKLOG_S) -> None:
        self._blocks: deque[Int16Array] = deque()
        self.samples = 0
        self.max_s = max_s
        self.refused_samples = 0
        """Samples dropped because the queue was full (counted at the input's rate)."""
        self._rate = 0
        self._resampler: Resampler | None = None

    def __len__(self) -> int:
        return self.samples

    def set_rates(self, incoming: int, outgoing: int) -> None:
        """What ``put`` receives and what the speaker plays; a difference is resampled."""
        self._rate = outgoing
        self._resampler = Resampler(incoming, outgoing) if incoming != outgoing else None

    @property
    def capacity(self) -> int:
        return int(self.max_s * self._rate) if self._rate else 0

    def put(self, block: Int16Array) -> int:
        """Queue a block; returns how many of its samples were refused (the queue was full)."""
        if self._resampler is not None:
            block = self._resampler.process(block)
        room = self.capacity - self.samples if self.capacity else len(block)
        refused = max(0, len(block) - max(0, room))
        if refused:
            self.refused_samples += refused
            # a copy: a view of the few samples that fit would keep the whole decoded frame
            # alive (a server flooding 4 MB frames pinned one per speaker period: 3 GB)
            block = block[: len(block) - refused].copy()
        if len(block):
            self._blocks.append(block)
            self.samples += len(block)
        return refused

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
