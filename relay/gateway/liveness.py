"""Whether each neighbour's gateway process is alive, asked of the process itself.

A channel's READY state only says that the neighbour's HTTP/2 connection is open: a SIGSTOPped process
keeps its connections open, and one starved of the GIL still answers HTTP/2 pings from grpc's C core. So
liveness is decided by an application-level probe (the standard health ``Check``, answered by the
neighbour's Python event loop, see :meth:`relay.gateway.peers.Peer.probe`).

Invariants:

- A slow hop alone never marks a neighbour down: a hop's answer includes the hops behind it, so a hop
  that has not answered within ``suspect_after_s`` (and again each ``suspect_after_s`` it keeps
  waiting), or failed at the transport, only *suspects* the neighbour. That starts one probe: at most
  one per neighbour at a time, none within ``quiet_s`` of a successful one, so a busy neighbour is not
  flooded with probes.
- A failed probe marks the neighbour down, and it stays down until a probe succeeds (re-probed every
  ``reprobe_interval_s`` in the background), never merely because its channel is READY again.
- When a neighbour goes down, every hop still waiting on it is abandoned at once
  (:meth:`NeighbourLiveness.watch` raises :class:`NeighbourDown`): its transfer then retries with a new
  key on another route, within the request's deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

Probe = Callable[[], Awaitable[bool]]
"""True when the neighbour's application answered, healthy, within the probe's own timeout."""


@dataclass(frozen=True)
class LivenessSettings:
    suspect_after_s: float = 0.5  # a hop unanswered this long starts a probe of its neighbour
    probe_timeout_s: float = 1.0  # a probe unanswered this long fails: the neighbour is down
    reprobe_interval_s: float = 0.5  # while down, probed again this often until it answers
    quiet_s: float = 0.5  # no new probe this soon after a successful one

    def __post_init__(self) -> None:
        if min(self.suspect_after_s, self.probe_timeout_s, self.reprobe_interval_s) <= 0 or self.quiet_s < 0:
            raise ValueError("liveness timeouts and intervals must be positive")


@dataclass
class ProbeCounts:
    answered: int = 0
    failed: int = 0
    marked_down: int = 0  # failed probes that took the neighbour from up to down


class NeighbourDown(Exception):
    """The neighbour failed its probe while a call to it was waiting: the call was abandoned."""

    def __init__(self, neighbour_id: str) -> None:
        super().__init__(f"gateway {neighbour_id} failed its liveness probe")
        self.neighbour_id = neighbour_id


class NeighbourLiveness:
    def __init__(self, probes: Mapping[str, Probe], settings: LivenessSettings) -> None:
        self._probes = dict(probes)
        self._settings = settings
        self._down = {neighbour_id: asyncio.Event() for neighbour_id in self._probes}  # set while down
        self._probing: dict[str, asyncio.Task[None]] = {}  # a first probe, then the re-probe loop if it failed
        self._verdicts: dict[str, asyncio.Future[bool]] = {}  # the first probe's outcome, while it runs
        self._last_success: dict[str, float] = {}
        self.counts = {neighbour_id: ProbeCounts() for neighbour_id in self._probes}

    @property
    def settings(self) -> LivenessSettings:
        return self._settings

    def is_down(self, neighbour_id: str) -> bool:
        return self._down[neighbour_id].is_set()

    def suspect(self, neighbour_id: str) -> None:
        """Start a probe of ``neighbour_id`` unless one is running or one just succeeded."""
        self._probe(neighbour_id)

    async def alive(self, neighbour_id: str) -> bool:
        """Probe now (or join the probe running) and say whether the neighbour is up: after a transport
        failure, so that a retry does not take the same dead route before the probe has spoken."""
        verdict = self._probe(neighbour_id)
        if verdict is not None:
            await asyncio.shield(verdict)
        return not self.is_down(neighbour_id)

    async def watch(self, neighbour_id: str, start: Callable[[], Awaitable[T]]) -> T:
        """The result of the call ``start`` makes; suspects the neighbour if it is slow, abandons the call if
        the neighbour goes down, and makes none while it is down (nothing is sent to a neighbour found dead)."""
        down = self._down[neighbour_id]
        if down.is_set():
            raise NeighbourDown(neighbour_id)
        work = asyncio.ensure_future(start())
        went_down = asyncio.create_task(down.wait())
        try:
            while True:  # suspected again each period: the neighbour may freeze after answering a probe
                done, _ = await asyncio.wait(
                    {work, went_down}, timeout=self._settings.suspect_after_s, return_when=asyncio.FIRST_COMPLETED
                )
                if work in done:
                    return work.result()
                if went_down in done:
                    raise NeighbourDown(neighbour_id)
                self.suspect(neighbour_id)
        finally:
            went_down.cancel()
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._probing.values()):
            task.cancel()
        await asyncio.gather(*self._probing.values(), return_exceptions=True)
        for verdict in self._verdicts.values():
            verdict.cancel()

    def _probe(self, neighbour_id: str) -> asyncio.Future[bool] | None:
        """The first verdict of the probe running or of a new one; None if none is due (down: the re-probe
        loop runs; or a probe succeeded within ``quiet_s``)."""
        if self.is_down(neighbour_id):
            return None
        if neighbour_id in self._verdicts:
            return self._verdicts[neighbour_id]
        if time.monotonic() - self._last_success.get(neighbour_id, -1e9) < self._settings.quiet_s:
            return None
        verdict = self._verdicts[neighbour_id] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._probe_then_reprobe(neighbour_id, verdict))
        self._probing[neighbour_id] = task
        task.add_done_callback(lambda _: self._probing.pop(neighbour_id, None))
        return verdict

    async def _probe_then_reprobe(self, neighbour_id: str, verdict: asyncio.Future[bool]) -> None:
        answered = await self._answers(neighbour_id)
        if not answered:
            self._down[neighbour_id].set()
            self.counts[neighbour_id].marked_down += 1
            log.warning("gateway %s failed its liveness probe: routed around until it answers", neighbour_id)
        del self._verdicts[neighbour_id]
        verdict.set_result(answered)
        while not answered:
            await asyncio.sleep(self._settings.reprobe_interval_s)
            answered = await self._answers(neighbour_id)
        if self.is_down(neighbour_id):
            self._down[neighbour_id].clear()
            log.warning("gateway %s answers its liveness probe again", neighbour_id)

    async def _answers(self, neighbour_id: str) -> bool:
        try:
            async with asyncio.timeout(self._settings.probe_timeout_s):
                answered = await self._probes[neighbour_id]()
        except TimeoutError:
            answered = False
        if answered:
            self.counts[neighbour_id].answered += 1
            self._last_success[neighbour_id] = time.monotonic()
        else:
            self.counts[neighbour_id].failed += 1
        return answered
