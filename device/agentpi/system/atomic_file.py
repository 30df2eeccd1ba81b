"""Files written whole or not at all, as a power cut on an SD card demands.

A file rewritten in place and cut off by a power loss is left empty or half written (the Pi's
kiosk builders see this as a config that no longer parses after a storm). Here the new content
goes to a temporary file beside the target, is flushed to the card, and only then takes the
target's name (``rename`` is atomic on one file system); the directory is flushed too, so the
new name survives the cut. A reader sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomically(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` with ``text`` (UTF-8), created with ``mode``, whole or not at all."""
    # one name per target: a temporary file a cut left behind is reused, never piled up
    temporary = path.with_name(f".{path.name}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(temporary, flags, mode)
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), mode)  # whatever the umask took away
            file.write(text.encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
