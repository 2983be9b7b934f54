"""Shared machinery of the fault tests: a sustained SAE load and the delivery invariants it must keep.

:class:`SaeLoad` runs N concurrent master SAEs in a closed loop (``enc_keys`` back to back) against any
testbed that hands out ETSI 014 clients (``ProcessTestbed.sae`` or ``LocalTestbed.sae``), records every
request (when, how long, the status and message it ended with, the keys it got) and keeps going across a
fault. :func:`check_delivery` then checks what the fault must not break:

* no key_ID (and no key) was handed to a master twice;
* every key a master received is fetched by its slave exactly once, with identical bytes, and a second
  fetch is 400 naming every key_ID (so nothing an SAE was told it has was lost, nor is delivered twice);
* failures are clean 503s (:meth:`SaeLoad.unexpected` lists the others).

"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from relay.domain import Key
from relay.etsi014.client import Etsi014Client, KmeError, KmeProtocolError, KmeUnreachable
from relay.etsi014.models import KeyRequest

SaeClients = Callable[[str], Etsi014Client]  # SAE ID -> a client with its certificate, at its home gateway
Pair = tuple[str, str]  # (master, slave)

CLIENT_TIMEOUT_S = 10.0
FETCH_BATCH = 64
FAILURE_PAUSE_S = 0.05  # after a failed request, so instant 503s do not spin the two cores
BROKEN = 0  # status recorded when there was no HTTP answer (or a malformed one)


@dataclass(frozen=True)
class Attempt:
    pair: Pair
    started: float  # time.monotonic()
    ended: float
    status: int  # 200, an HTTP error status, or BROKEN
    message: str = ""
    keys: tuple[Key, ...] = ()
    on_demand: bool = False  # asked for a non-default size, which the ready pool never serves


@dataclass
class SaeLoad:
    """``concurrency`` requesters over ``pairs`` (worker i drives pairs[i % len]); use ``async with``.

    With ``on_demand_share`` > 0 that share of the workers ask for 512-bit keys, which are always relayed
    on demand (the ready pool holds default-size keys only): recovery is measured on those.
    """

    clients: SaeClients
    pairs: Sequence[Pair]
    concurrency: int = 6
    on_demand_share: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def __aenter__(self) -> SaeLoad:
        on_demand_workers = round(self.concurrency * self.on_demand_share)
        self._tasks = [
            asyncio.create_task(self._worker(self.pairs[i % len(self.pairs)], on_demand=i < on_demand_workers))
            for i in range(self.concurrency)
        ]
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            results = await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), CLIENT_TIMEOUT_S + 5)
            self._tasks = []
            crashed = [result for result in results if result is not None]
            assert crashed == [], f"a load worker crashed: {crashed!r}"

    async def _worker(self, pair: Pair, *, on_demand: bool) -> None:
        master, slave = pair
        request = KeyRequest(number=1, size=512) if on_demand else KeyRequest(number=1)
        async with self.clients(master) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    container = await client.get_key(slave, request)
                except KmeError as exc:
                    message = exc.error.message if exc.error else ""
                    self.attempts.append(
                        Attempt(pair, started, time.monotonic(), exc.status, message, on_demand=on_demand)
                    )
                except (KmeUnreachable, KmeProtocolError) as exc:
                    self.attempts.append(
                        Attempt(pair, started, time.monotonic(), BROKEN, repr(exc), on_demand=on_demand)
                    )
                else:
                    self.attempts.append(
                        Attempt(pair, started, time.monotonic(), 200, "", container.keys, on_demand=on_demand)
                    )
                    continue
                await asyncio.sleep(FAILURE_PAUSE_S)

    # ----- figures ----------------------------------------------------------------------------------

    @property
    def successes(self) -> list[Attempt]:
        return [a for a in self.attempts if a.status == 200]

    @property
    def unavailable(self) -> list[Attempt]:
        return [a for a in self.attempts if a.status == 503]

    def unexpected(self, *allowed_503: str) -> list[Attempt]:
        """Failures that are not a 503 whose message contains one of ``allowed_503`` (any 503 if none given)."""
        return [
            a
            for a in self.attempts
            if a.status != 200
            and not (a.status == 503 and (not allowed_503 or any(text in a.message for text in allowed_503)))
        ]

    def keys_by_pair(self) -> dict[Pair, list[Key]]:
        keys: dict[Pair, list[Key]] = {}
        for attempt in self.successes:
            keys.setdefault(attempt.pair, []).extend(attempt.keys)
        return keys

    def succeeded_between(
        self, start: float, end: float, *, on_demand: bool | None = None, pair: Pair | None = None
    ) -> int:
        return sum(
            start < a.ended < end
            for a in self.successes
            if (on_demand is None or a.on_demand == on_demand) and (pair is None or a.pair == pair)
        )

    def max_latency(self) -> float:
        return max((a.ended - a.started for a in self.attempts), default=0.0)

    def messages(self) -> Counter[str]:
        return Counter(f"{a.status} {a.message[:110]}" for a in self.attempts if a.status != 200)

    async def wait_success(
        self, after: float, *, timeout_s: float, on_demand: bool | None = None, pair: Pair | None = None
    ) -> float:
        """Seconds from ``after`` until a request *started* after it succeeded (the load keeps running)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = [
                a.ended
                for a in self.successes
                if a.started > after
                and (on_demand is None or a.on_demand == on_demand)
                and (pair is None or a.pair == pair)
            ]
            if done:
                return min(done) - after
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"no request succeeded within {timeout_s:.0f} s of the fault ending; "
            f"failures: {self.messages().most_common(4)}"
        )

    async def wait_failures(self, after: float, *, count: int, timeout_s: float, containing: str = "") -> float:
        """Seconds from ``after`` until ``count`` requests ended in a 503 containing ``containing``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ended = sorted(a.ended for a in self.unavailable if a.ended > after and containing in a.message)
            if len(ended) >= count:
                return ended[count - 1] - after
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"fewer than {count} 503s {containing!r} within {timeout_s:.0f} s; "
            f"outcomes: {self.messages().most_common(4)}, {len(self.successes)} successes"
        )


@dataclass
class Figures:
    """The one-line summary every fault test prints (collected for the README)."""

    fault: str
    load: SaeLoad
    faults: int
    recovery_s: float
    extra: str = ""

    def line(self) -> str:
        other = len([a for a in self.load.attempts if a.status not in (200, 503)])
        return (
            f"FAULT {self.fault}: {len(self.load.attempts)} requests, {self.faults} fault(s) injected, "
            f"{len(self.load.successes)} succeeded, {len(self.load.unavailable)} answered 503, {other} other "
            f"failures; recovered {self.recovery_s:.2f} s after the fault ended; "
            f"max latency {self.load.max_latency():.2f} s{'; ' + self.extra if self.extra else ''}"
        )

    def print(self) -> None:
        print("\n" + self.line())
        for message, count in self.load.messages().most_common(6):
            print(f"    {count} x {message}")


# ----- invariants -----------------------------------------------------------------------------------------


async def check_delivery(clients: SaeClients, keys_by_pair: Mapping[Pair, Sequence[Key]]) -> int:
    """Every key reaches its slave exactly once with identical bytes; returns how many were checked."""
    everything = [key for keys in keys_by_pair.values() for key in keys]
    ids = [key.key_id for key in everything]
    assert len(set(ids)) == len(ids), f"{len(ids) - len(set(ids))} key_IDs were handed out twice"
    assert len({key.key for key in everything}) == len(everything), "the same key bytes were handed out twice"
    for (master, slave), keys in keys_by_pair.items():
        async with clients(slave) as client:
            for start in range(0, len(keys), FETCH_BATCH):
                batch = list(keys[start : start + FETCH_BATCH])
                batch_ids = [key.key_id for key in batch]
                fetched = await client.get_key_with_ids(master, batch_ids, use_post=True)
                assert [(k.key_id, k.key) for k in fetched.keys] == [(k.key_id, k.key) for k in batch], (
                    f"{slave} got other keys than {master}"
                )
                try:
                    await client.get_key_with_ids(master, batch_ids, use_post=True)
                except KmeError as again:
                    assert again.status == 400 and again.error is not None, again
                    assert [d["key_ID_not_found"] for d in again.error.details or []] == batch_ids
                else:
                    raise AssertionError(f"{slave} fetched {len(batch)} keys from {master} a second time")
    return len(everything)


@dataclass
class SteadyPair:
    """One master asking its slave for one key every ``interval_s`` beside a load; use ``async with``.

    What a flow that should not suffer from the load sees: the keys it got and the failures it met.
    """

    clients: SaeClients
    pair: Pair
    interval_s: float
    keys: list[Key] = field(default_factory=list)
    failures: list[KmeError] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SteadyPair:
        self._task = asyncio.create_task(self._ask())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _ask(self) -> None:
        master, slave = self.pair
        async with self.clients(master) as client:
            while True:
                try:
                    self.keys.extend((await client.get_key(slave, KeyRequest())).keys)
                except KmeError as exc:
                    self.failures.append(exc)
                await asyncio.sleep(self.interval_s)
