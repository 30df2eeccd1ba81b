"""When the wake models need not run: every frame they would look at is the room's quiet.

The wake models score a frame from the last ~2 s of audio (``FeatureHistory.reach`` frames: 10
to fill the mel rows, plus one per embedding the widest model reads). Once that whole reach is
quiet room, the score is a quiet room's (openWakeWord's own stays under 0.05 there: see
tests/test_quiet_gate.py), so the gate shuts: frames are kept, not scored. The first frame that
is not quiet opens it, and the kept frames are pushed through the feature models before it, so
from then on every score is the one the ungated pipeline gives (to 1e-4) and detection is never
late. A loud room (speech, music) never shuts it and costs what it did (one RMS per frame).

microWakeWord's engine gates its model the same way, with feature rows kept instead of frames
(``wake.micro``): its frontend runs on every frame, its model only where the gate is open.

A frame is quiet when its level is within ``MARGIN_DB`` of the room's floor and below
``CEILING_DBFS`` whatever the floor: a room whose noise is loud enough to hide a voice is never
taken for quiet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from agentpi.audio.convert import Int16Array
from agentpi.audio.vad import rms_dbfs

MARGIN_DB = 6.0
"""A frame this far above the floor holds a sound (a voice across the room is 10-30 dB up)."""
CEILING_DBFS = -40.0
"""Never quiet above this, floor or not: a fan at -42 dBFS is quiet; -38 dBFS may be a voice."""
FLOOR_RISE_DB = 0.05
"""The floor follows a quieter frame at once and a louder room by this per 80 ms frame (0.6 dB
per second): a voice does not lift it, a new fan does within a minute."""
START_FLOOR_DBFS = CEILING_DBFS - MARGIN_DB

Kept = TypeVar("Kept")
"""What is kept of a frame not scored: the frame itself, or what was already made of it."""


@dataclass(frozen=True)
class GateState(Generic[Kept]):
    floor_dbfs: float = START_FLOOR_DBFS
    quiet_frames: int = 0
    """Quiet frames in a row, the newest included."""
    kept: tuple[Kept, ...] = ()
    """What was kept of the frames not scored since the gate shut, oldest first: the last
    ``reach`` of them at most (pushed through the models, they leave the state as if none had
    been skipped)."""


def step(
    state: GateState[Kept], frame: Int16Array, reach: int, keep: Kept
) -> tuple[GateState[Kept], bool]:
    """The gate after ``frame``, and whether ``frame`` is to be scored: not once it and the
    ``reach`` frames before it are all quiet (``keep`` is kept instead). A frame to score comes
    with what was kept before it (``GateState.kept``), to push through first."""
    level = rms_dbfs(frame)
    quiet = level <= min(state.floor_dbfs + MARGIN_DB, CEILING_DBFS)
    floor = min(level, state.floor_dbfs + FLOOR_RISE_DB)
    quiet_frames = state.quiet_frames + 1 if quiet else 0
    if quiet_frames > reach:
        return GateState(floor, quiet_frames, (*state.kept, keep)[-reach:]), False
    return GateState(floor, quiet_frames, state.kept), True


def opened(state: GateState[Kept]) -> GateState[Kept]:
    """The state once the kept frames were pushed through."""
    return GateState(state.floor_dbfs, state.quiet_frames)
