"""CPU time of processes during a run, from ``/proc/<pid>/stat`` (Linux), to tell what saturates.

A run on one machine shares its cores between the gateways, Redis, the simulators and the load
generator itself; cores used per process over the run show which of them was the bottleneck.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far, or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime: fields 14 and 15 of stat(5)


class CpuMeter:
    """Cores used by each named process (and by this one, as ``loadgen``) between start and stop."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self._pids = {**pids, "loadgen": os.getpid()}
        self._before: dict[str, float | None] = {}
        self._started = 0.0

    def start(self) -> None:
        self._before = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        self._started = time.monotonic()

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._started
        cores = {}
        for name, pid in self._pids.items():
            now, then = cpu_seconds(pid), self._before.get(name)
            if now is not None and then is not None and elapsed > 0:
                cores[name] = round((now - then) / elapsed, 2)
        return cores
