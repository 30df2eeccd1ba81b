"""The range of every number in the config: (lowest, highest, unit), checked at load.

One table for every section, so no number escapes a check: NaN, infinity, a negative time or a
wildly large one stops the device at start with the key and the range, never mid-run.
(tools.max_output_bytes and agent.keepalive_s, whose rules are not a plain range, are checked
beside their sections.)
"""

from __future__ import annotations

from agentpi.wake.settings import WAKE_RANGES

NUMBER_RANGES: dict[str, tuple[float, float, str]] = {
    "agent.connect_timeout_s": (0.5, 120, "seconds"),
    "trigger.restart_pause_s": (0, 3600, "seconds"),
    **WAKE_RANGES,
    "audio.chunk_ms": (10, 250, "ms"),
    "audio.vad_threshold_dbfs": (-90, 0, "dBFS"),
    "audio.preroll_s": (0, 10, "seconds"),
    "audio.echo_tail_ms": (0, 2000, "ms"),
    "audio.jitter_ms": (0, 500, "ms"),
    "audio.volume": (0, 4, "1 = as is"),
    "audio.cue_volume": (0, 4, "1 = as is"),
    "audio.max_backlog_s": (5, 600, "seconds of agent audio"),
    "conversation.silence_close_s": (0.5, 600, "seconds"),
    "conversation.metadata_timeout_s": (0.5, 120, "seconds"),
    "conversation.idle_close_s": (1, 3600, "seconds"),
    "conversation.max_duration_s": (10, 86400, "seconds"),
    "conversation.max_after_complete_s": (1, 3600, "seconds"),
    "tools.timeout_s": (0.1, 600, "seconds"),
    "tools.max_running": (1, 16, "tool calls at once"),
    "tools.max_waiting": (0, 256, "tool calls"),
    "home_assistant.timeout_s": (0.5, 60, "seconds"),
    "button.bounce_s": (0, 1, "seconds"),
    "button.long_press_s": (0.2, 10, "seconds"),
    "button.double_press_s": (0.1, 2, "seconds"),
    "tools.mcp.approval_margin_s": (0, 60, "seconds"),
    "conversation.overrides.speed": (0.7, 1.2, "1 = as recorded"),
    "conversation.overrides.stability": (0, 1, ""),
    "conversation.overrides.similarity_boost": (0, 1, ""),
    "leds.fps": (1, 100, "frames per second"),
    "leds.brightness": (0, 1, ""),
}
