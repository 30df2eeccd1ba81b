"""How the C heap gives memory back: large blocks always to the system, at once.

glibc serves a block above its mmap threshold (128 KiB at start) straight from the system and
returns it when freed; but each such free *raises* the threshold to the block's size, after which
blocks of that size come from the heap, whose top is rarely returned. A server sending 4 MB audio
frames thus lifted the device from 56 to 90 MB for good. Fixing the threshold keeps it where it
starts: what a frame needs while it is decoded goes back when it is done (81 MB at the peak).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3
"""mallopt's parameter number (malloc.h); setting it turns the dynamic threshold off."""
MMAP_THRESHOLD_BYTES = 256 * 1024


def return_large_blocks() -> bool:
    """Fix glibc's mmap threshold; False where the C library is not glibc (nothing changes)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    return False
