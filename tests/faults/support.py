"""Shared machinery of the fault tests: a sustained SAE load, the delivery invariants, a cuttable TCP proxy.

:class:`SaeLoad` runs N concurrent master SAEs in a closed loop (``enc_keys`` back to back) against any
testbed that hands out ETSI 014 clients (``ProcessTestbed.sae`` or ``LocalTestbed.sae``), records every
request (when, how long, the status and message it ended with, the keys it got) and keeps going across a
fault. :func:`check_delivery` then checks what the fault must not break:

* no key_ID (and no key) was handed to a master twice;
* every key a master received is fetched by its slave exactly once, with identical bytes, and a second
  fetch is 400 naming every key_ID (so nothing an SAE was told it has was lost, nor is delivered twice);
* failures are clean 503s (:meth:`SaeLoad.unexpected` lists the others).

:class:`TcpProxy` sits between two gateways' gRPC channels so a test can cut the link (as a firewall
dropping the port would: existing connections die, new ones hang) and heal it. :func:`proxied_testbed`
is ``tests.gateway.testbed.running_testbed`` with such proxies and per-gateway clocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from relay import topology as topology_module
from relay.crypto import Clock, system_clock_ms
from relay.domain import Key
from relay.etsi014.client import Etsi014Client, KmeError, KmeProtocolError, KmeUnreachable
from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings, plan_gateway
from relay.gateway.service import RunningGateway, start_gateway
from relay.kms_sim.config import SimSettings, from_topology
from relay.kms_sim.service import RunningKms, start_kms
from relay.pki.layout import KeyDirectory
from tests.gateway.testbed import LocalTestbed, default_document, with_free_ports

SaeClients = Callable[[str], Etsi014Client]  # SAE ID -> a client with its certificate, at its home gateway
Pair = tuple[str, str]  # (master, slave)

CLIENT_TIMEOUT_S = 10.0
FETCH_BATCH = 64
FAILURE_PAUSE_S = 0.05  # after a failed request, so instant 503s do not spin the two cores
PLENTY_OF_QKD_KEY = SimSettings(initial_key_count=5000)  # the vendor links' backlog outlasts any test's load
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


async def wait_until(
    check: Callable[[], Any], *, timeout_s: float, interval_s: float = 0.1, what: str = "condition"
) -> float:
    """Poll a callable or coroutine function until truthy; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        await asyncio.sleep(interval_s)
    raise AssertionError(f"{what}: not reached within {timeout_s:.0f} s")


# ----- a link that can be cut -------------------------------------------------------------------------------


class TcpProxy:
    """Loopback TCP forwarder to ``target_port``; :meth:`cut` blackholes it, :meth:`heal` restores it.

    Cut: every open connection is reset and new ones are accepted but never answered (like a firewall
    dropping the port: the TLS handshake, and so every RPC, runs into its deadline). Heal: the held
    connections are reset too, so clients reconnect through a working path.
    """

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host, self.target_port = host, target_port
        self.port = 0
        self.cut_count = 0
        self.connections = 0
        self._blocked = False
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._reset_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def is_cut(self) -> bool:
        return self._blocked

    def cut(self) -> None:
        self._blocked = True
        self.cut_count += 1
        self._reset_all()

    def heal(self) -> None:
        self._blocked = False
        self._reset_all()

    def _reset_all(self) -> None:
        for writer in list(self._open):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._open.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(writer)
        if self._blocked:
            return  # held open, never answered, reset on heal
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            self._open.discard(writer)
            writer.transport.abort()
            return
        self._open.add(upstream_writer)
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self._blocked:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._open.discard(writer)
            writer.transport.abort()


# ----- the in-process testbed with proxies and clocks -------------------------------------------------------


class SkewedClock:
    """Milliseconds of the system clock plus a mutable offset (a gateway whose clock drifts)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return system_clock_ms() + self.offset_ms


@dataclass
class FaultTestbed:
    local: LocalTestbed
    proxies: dict[tuple[str, str], TcpProxy]  # (caller, callee) -> the proxy the caller dials

    def sae(self, sae_id: str) -> Etsi014Client:
        return self.local.sae(sae_id)

    def cut(self, a: str, b: str) -> None:
        for key in ((a, b), (b, a)):
            self.proxies[key].cut()

    def heal(self, a: str, b: str) -> None:
        for key in ((a, b), (b, a)):
            self.proxies[key].heal()


@contextlib.asynccontextmanager
async def proxied_testbed(
    keys: KeyDirectory,
    redis_url: str,
    settings: GatewaySettings,
    *,
    sim: SimSettings | None = None,
    proxied_links: Sequence[tuple[str, str]] = (),
    clocks: Mapping[str, Clock] | None = None,
) -> AsyncIterator[FaultTestbed]:
    """Like ``running_testbed``, but each gateway of a proxied link dials its neighbour through a proxy.

    Each gateway gets its own view of the topology: the neighbour's ``grpc_port`` there is the proxy's,
    while the neighbour itself listens on the real one from the shared document.
    """
    document = with_free_ports(default_document())
    topology = topology_module.parse(copy.deepcopy(document))
    real_ports = {gateway.id: gateway.grpc_port for gateway in topology.gateways}
    proxies: dict[tuple[str, str], TcpProxy] = {}
    kms: dict[str, RunningKms] = {}
    gateways: dict[str, RunningGateway] = {}
    testbed = FaultTestbed(LocalTestbed(topology, keys, kms, gateways), proxies)
    try:
        for a, b in proxied_links:
            for caller, callee in ((a, b), (b, a)):
                proxies[caller, callee] = proxy = TcpProxy(real_ports[callee])
                await proxy.start()
        for vendor in topology.kms:
            kms[vendor.id] = await start_kms(from_topology(topology, vendor.id, sim), keys)
        gateway_settings = replace(settings, redis_url=redis_url)
        for gateway in topology.gateways:
            view = copy.deepcopy(document)
            for region in view["regions"]:
                for entry in region["gateways"]:
                    if (gateway.id, entry["id"]) in proxies:
                        entry["grpc_port"] = proxies[gateway.id, entry["id"]].port
            plan = plan_gateway(topology_module.parse(view), gateway.id, gateway_settings)
            clock = (clocks or {}).get(gateway.id, system_clock_ms)
            gateways[gateway.id] = await start_gateway(plan, gateway_settings, keys, clock=clock)
        await testbed.local.fill_qkd_pools()
        yield testbed
    finally:
        for running in gateways.values():
            await running.stop()
        for running_kms in kms.values():
            await running_kms.stop()
        for proxy in proxies.values():
            await proxy.close()
