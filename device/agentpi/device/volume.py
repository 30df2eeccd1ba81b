"""The speaker's software gain: the configured volume, changed in percent of it by the agent's
set_volume tool and by MQTT."""

from __future__ import annotations

from agentpi import events as ev
from agentpi.config.ranges import NUMBER_RANGES
from agentpi.events import EventBus
from agentpi.tools.device import MAX_VOLUME_PERCENT

MAX_GAIN = NUMBER_RANGES["audio.volume"][1]
"""No change goes louder than the loudest volume a config may set."""


class Volume:
    def __init__(self, configured: float, events: EventBus) -> None:
        self.configured = configured
        self.events = events
        self.gain = configured

    @property
    def percent(self) -> float:
        """Of the configured volume."""
        return round(100 * self.gain / self.configured, 1) if self.configured else 0.0

    def set_percent(self, percent: float) -> None:
        percent = min(max(percent, 0.0), MAX_VOLUME_PERCENT)
        self.gain = min(MAX_GAIN, self.configured * percent / 100)
        self.events.publish(ev.VolumeChanged(self.percent))
