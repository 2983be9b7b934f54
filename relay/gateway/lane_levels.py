"""What this gateway knows of the QKD lane levels along its routes, so a transfer bound to fail at a dry
lane further on is not started (and spends no QKD key on its first hops).

Each gateway measures its own outbound lanes (:meth:`LaneBoard.measured`, every ``lane_refresh_s``, and
:meth:`LaneBoard.found_short` at once when a seal finds a lane too short for a key) and passes every
fresh entry it holds, its own and those learnt from downstream, on the answer to each frame, success or
failure, as trailing metadata ``qkdr-lanes``. Why
piggy-backed rather than a periodic call: the gateways that need a level are exactly those sending hops
towards it, the answers cost no extra round trip, no proto change, and a dry lane is reported on the very
answer that refused a hop. What a gateway no longer sends towards it does not learn about, so before a
transfer is refused for a dry lane :class:`LaneLookout` looks again (one ``LaneLevels`` call to the next
gateway, shared by concurrent refusals); entries also expire after ``fresh_s``, an unknown level counting
as serviceable.

Invariants: a report names ``sender>receiver`` lanes of the topology's QKD links only (anything else is
ignored); an entry is replaced only by a newer measurement; this gateway's own lanes are never taken from
a neighbour's report. A lane is dry only when found short, not when it is merely in use: one QKD key
seals a whole frame, and keys on a require-qkd link wait for the next one, so a burst of requests over a
busy lane is queued there rather than refused here (before frames, the board counted one key per started
transfer against the estimate).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from relay.topology import Link

LANES_METADATA = "qkdr-lanes"
MAX_REPORTS = 64  # entries read from one answer; a topology's QKD lanes are far fewer
Lane = tuple[str, str]  # (sending gateway, receiving gateway) of one direction of a QKD link


@dataclass(frozen=True)
class LaneReport:
    sender: str
    receiver: str
    level: int
    age_ms: int  # how long before the answer the level was measured


def encode(reports: Iterable[LaneReport]) -> str:
    return ";".join(f"{r.sender}>{r.receiver}={r.level}@{r.age_ms}" for r in reports)


def decode(text: str) -> list[LaneReport]:
    """The well-formed entries of a ``qkdr-lanes`` value; a malformed entry is skipped, never fatal."""
    reports = []
    for entry in text.split(";")[:MAX_REPORTS]:
        lane, _, measure = entry.partition("=")
        sender, _, receiver = lane.partition(">")
        level, _, age = measure.partition("@")
        if sender and receiver and level.isdigit() and age.isdigit():
            reports.append(LaneReport(sender, receiver, int(level), int(age)))
    return reports


def qkd_lanes(links: Iterable[Link]) -> frozenset[Lane]:
    """Both directions of every link with a QKD channel."""
    return frozenset(lane for link in links if link.qkd_link for lane in (link.gateways, link.gateways[::-1]))


class LaneBoard:
    def __init__(
        self, own_id: str, links: Iterable[Link], *, fresh_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._own_id = own_id
        self._lanes = qkd_lanes(links)
        self._fresh_s = fresh_s
        self._clock = clock
        self._known: dict[Lane, tuple[int, float]] = {}  # lane -> (level estimate, measured at)
        self._short_at: dict[Lane, float] = {}  # own lanes -> when last found short

    def measured(self, receiver: str, level: int | None) -> None:
        """Our own outbound lane to ``receiver`` holds ``level`` keys now; None: not reported (the
        receiver is down, so the lane is not what stops a transfer: its link is, and is reported so).

        A lane at 0 is known dry only while it was found short in the freshness window
        (:meth:`found_short`); a zero seen between refills of a busy lane is reported as 1, since frames
        waiting on it get the next key (a require-qkd link waits for it), and routing must not refuse
        transfers for a lane that is merely in use."""
        own = (self._own_id, receiver)
        if level is None:
            self._known.pop(own, None)
            return
        now = self._clock()
        if level == 0 and not self.short_within(receiver, self._fresh_s):
            level = 1
        self._known[own] = (level, now)

    def short_within(self, receiver: str, seconds: float) -> bool:
        """Whether our outbound lane to ``receiver`` was found short in the last ``seconds``."""
        return self._clock() - self._short_at.get((self._own_id, receiver), -math.inf) <= seconds

    def found_short(self, receiver: str) -> None:
        """Our outbound lane to ``receiver`` could not cover a key (after waiting, on require-qkd): dry."""
        now = self._clock()
        self._short_at[self._own_id, receiver] = now
        self._known[self._own_id, receiver] = (0, now)

    def learn(self, reports: Iterable[LaneReport]) -> None:
        """Take a neighbour's fresher entries about lanes not our own."""
        now = self._clock()
        for report in reports:
            lane = (report.sender, report.receiver)
            if lane not in self._lanes or report.sender == self._own_id:
                continue
            measured_at = now - report.age_ms / 1000
            if measured_at > self._known.get(lane, (0, -1e18))[1]:
                self._known[lane] = (report.level, measured_at)

    def level(self, sender: str, receiver: str) -> int | None:
        """The estimated level, or None when no fresh measurement is known."""
        known = self._known.get((sender, receiver))
        if known is None or self._clock() - known[1] > self._fresh_s:
            return None
        return known[0]

    def dry(self) -> frozenset[Lane]:
        """The lanes known, freshly, to hold no key."""
        return frozenset(lane for lane in self._known if self.level(*lane) == 0)

    def reports(self) -> list[LaneReport]:
        """Every fresh entry, as passed on to the neighbour whose hop we answer."""
        now = self._clock()
        return [
            LaneReport(sender, receiver, level, int((now - measured_at) * 1000))
            for (sender, receiver), (level, measured_at) in sorted(self._known.items())
            if now - measured_at <= self._fresh_s
        ]


class LaneLookout:
    """Looks again before a transfer is refused for a dry lane: a dry report may be older than a refill.

    Our own lanes are measured now; a remote lane is asked of the neighbour the route leaves through
    (``LaneLevels``, answered with its own lanes measured now and what it learnt downstream). Concurrent
    looks at the same source share one call, so a burst of refusals costs one round trip, not one each.
    """

    def __init__(
        self, own_id: str, measure_own: Callable[[], Awaitable[None]], ask: Callable[[str], Awaitable[None]]
    ) -> None:
        self._own_id = own_id
        self._measure_own = measure_own
        self._ask = ask
        self._looking: dict[str, asyncio.Future[None]] = {}  # by neighbour ID, or our own ID

    async def look(self, lanes: Iterable[Lane], via: str) -> None:
        senders = {sender for sender, _ in lanes}
        sources = ([self._own_id] if self._own_id in senders else []) + ([via] if senders - {self._own_id} else [])
        await asyncio.gather(*(self._shared(source) for source in sources))

    async def _shared(self, source: str) -> None:
        running = self._looking.get(source)
        if running is None:
            call = self._measure_own() if source == self._own_id else self._ask(source)
            running = self._looking[source] = asyncio.ensure_future(call)
            running.add_done_callback(lambda _: self._looking.pop(source, None))
        await asyncio.shield(running)
