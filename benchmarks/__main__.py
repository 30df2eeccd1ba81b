"""`make bench`: every figure against a peer measured in the same run, as a ratio."""

from __future__ import annotations

import sys

from benchmarks import protocol, soak, soundcard, wake


def main() -> int:
    print("== protocol layer ==")
    protocol.main()
    print("\n== idle wake-word listener ==")
    wake.main()
    print("\n== conversation through a sound card (PyAudio) ==")
    soundcard.main()
    print("\n== soak: 200 conversations in one process ==")
    soak.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
