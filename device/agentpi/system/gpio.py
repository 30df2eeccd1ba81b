"""Opening gpiozero devices with errors a user can act on.

gpiozero tries four pin libraries in turn and warns about each one it cannot load; on a machine
with none it then fails with "Unable to load any default pin factory!". Here that becomes one line
that says what to install, and every other gpiozero error names the pins it was about.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from agentpi.errors import AgentpiError, reason_of


class GpioError(AgentpiError):
    """Pins that cannot be driven: no GPIO library, a pin in use, a bad pin number."""


@contextlib.contextmanager
def gpio_errors(what: str) -> Iterator[None]:
    """Turn gpiozero's failures while opening ``what`` (e.g. "LEDs on GPIO [17]") into GpioError."""
    from gpiozero.exc import BadPinFactory, GPIOZeroError, PinFactoryFallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PinFactoryFallback)
        try:
            yield
        except BadPinFactory:
            raise GpioError(
                f"{what}: no GPIO library found. On Raspberry Pi OS: sudo apt install"
                " python3-lgpio (make does it). To try without a Pi: GPIOZERO_PIN_FACTORY=mock"
            ) from None
        except GPIOZeroError as exc:
            raise GpioError(f"{what}: {reason_of(exc)}") from None
