"""Python's cycle collector, and the objects that live as long as the process.

A full collection walks every container object the collector tracks, and a ready device tracks
a couple of hundred thousand that never die: modules, classes, functions, the config, the
models' tables. A conversation makes containers fast (a dict or two per message each way), so
full collections came every few seconds and walked them all: 15 % of a sound-card
conversation's CPU here (``perf``: ``gc_collect_main`` and its visitors). Once the device is
ready they are moved where the collector does not look (``gc.freeze``); everything made after
that is collected as before.
"""

from __future__ import annotations

import gc


def freeze_start_up() -> None:
    """Collect what start-up left behind, then keep what remains out of every later
    collection."""
    gc.collect()
    gc.freeze()
