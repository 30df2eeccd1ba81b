"""What Linux says about a benchmark's child process."""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time so far; None once the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def peak_rss_mb(pid: int) -> float | None:
    """The process's VmHWM so far (wait4's ru_maxrss would count the parent's pages the child
    had between fork and exec); None once the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def context_switches(pid: int) -> int | None:
    """Voluntary + involuntary context switches of all the process's threads so far: how often
    it was woken (each costs 0.1-0.3 ms of CPU on the machines we measure on, whatever it does);
    None once the process is gone."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    total += int(line.split()[1])
    except (OSError, ValueError):
        return None
    return total
