"""End to end, three regions as real processes: SAEs in different regions share keys through the gateways.

Per region a private ``redis-server``; the two vendor QKD networks as ``qkd-relay kms-sim run`` processes;
the three gateways as ``qkd-relay gateway run`` processes, on a free-port copy of the embedded topology:

    SAE-R1-* -- GW1 ==QKD (qkd+pqc)== GW2 ==QKD (require-qkd)== GW3 -- SAE-R3-*
                  \\______________ pqc-only, cost 3 ______________/

Scenarios 1-3 share one testbed (pre-relay on, as deployed); the destructive ones (SIGKILL of GW2, a cut
link, a QBER alarm) each get fresh processes. Failure reports carry every process's stderr (conftest).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from relay.domain import Key
from relay.etsi014.client import Etsi014Client, KmeError, KmeProtocolError, KmeUnreachable
from relay.etsi014.models import MSG_KEYS_NOT_FOUND, KeyRequest
from tests.support.process_testbed import ProcessTestbed, cli, round_trip
from tests.support.waiting import wait_until

MASTER, SLAVE, OTHER_SLAVE = "SAE-R1-A", "SAE-R3-A", "SAE-R3-B"
CLIENT_TIMEOUT_S = 10.0
FETCH_BATCH = 64


@pytest.fixture(scope="module")
def keys_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates and ML-DSA identities for the topology, once per module, by the operator's command."""
    root = tmp_path_factory.mktemp("e2e-keys")
    result = cli("keys", "init", "--keys", str(root))
    assert result.returncode == 0, result.stderr
    return root


def _running(directory: Path, keys_root: Path, **options: list[str]) -> Iterator[ProcessTestbed]:
    testbed = ProcessTestbed(directory, keys_root, **options)
    testbed.start()
    try:
        yield testbed
    finally:
        testbed.stop()


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory, keys_root: Path) -> Iterator[ProcessTestbed]:
    """Pre-relay on, as deployed; small ready pools keep the start-up relaying light on two cores."""
    yield from _running(tmp_path_factory.mktemp("regions"), keys_root, gateway_options=["--ready-pool", "2:4"])


@pytest.fixture
def on_demand(tmp_path: Path, keys_root: Path) -> Iterator[ProcessTestbed]:
    """Every enc_keys relays on demand, so every request crosses the gateways while we break them.

    The vendor links start with plenty of key so a sustained load is not throttled by the simulated
    2-3 kbit/s QKD rates (``require-qkd`` would answer 503 for lack of key, which is scenario 6).
    """
    yield from _running(
        tmp_path / "testbed",
        keys_root,
        gateway_options=["--no-prerelay", "--hop-timeout", "3"],
        kms_options=["--initial-keys", "5000"],
    )


@pytest.fixture
def scarce_qkd(tmp_path: Path, keys_root: Path) -> Iterator[ProcessTestbed]:
    """Small QKD pools (alarm below 2, fill to 6 per lane) fed by vendor links holding little key."""
    yield from _running(
        tmp_path / "testbed",
        keys_root,
        gateway_options=["--no-prerelay", "--qkd-pool", "2:6"],
        kms_options=["--initial-keys", "8"],
    )


def _pairs(keys: tuple[Key, ...] | list[Key]) -> list[tuple[str, bytes]]:
    return [(key.key_id, key.key) for key in keys]


async def _status_of(call: Awaitable[object]) -> int:
    """The HTTP status a client call ends with (200 if it succeeded)."""
    try:
        await call
    except KmeError as exc:
        return exc.status
    return 200


# ----- 1-3: one testbed, pre-relay on ---------------------------------------------------------------------


async def test_keys_cross_three_regions_identically_in_both_request_forms(regions: ProcessTestbed) -> None:
    await round_trip(regions, MASTER, SLAVE)
    async with regions.sae(MASTER) as master, regions.sae(SLAVE) as slave:
        # Pre-relay fills GW1's ready pool for the pair; status reports its real level.
        async def two_ready() -> bool:
            status = await master.get_status(SLAVE)
            assert (status.source_kme_id, status.target_kme_id) == ("GW1", "GW3")
            return status.stored_key_count >= 2

        await wait_until(two_ready, timeout_s=15, interval_s=0.2, what="pre-relayed keys ready at GW1")

        by_get = await master.get_key(SLAVE, KeyRequest(number=2))  # GET form, default size
        by_post = await master.get_key(SLAVE, KeyRequest(number=3, size=512), use_post=True)  # relayed on demand
        first = await slave.get_key_with_ids(MASTER, [by_get.keys[0].key_id])  # GET form
        rest = await slave.get_key_with_ids(MASTER, [by_get.keys[1].key_id], use_post=True)
        posted = await slave.get_key_with_ids(MASTER, [key.key_id for key in by_post.keys], use_post=True)

    assert _pairs(first.keys + rest.keys) == _pairs(by_get.keys)
    assert _pairs(posted.keys) == _pairs(by_post.keys)
    assert [len(key.key) for key in by_get.keys + by_post.keys] == [32, 32, 64, 64, 64]
    everything = by_get.keys + by_post.keys
    assert len({key.key_id for key in everything}) == len({key.key for key in everything}) == 5


async def test_wrong_slave_gets_401_and_burns_nothing(regions: ProcessTestbed) -> None:
    async with regions.sae(MASTER) as master, regions.sae(SLAVE) as slave, regions.sae(OTHER_SLAVE) as other:
        issued = await master.get_key(SLAVE, KeyRequest(number=2))
        ids = [key.key_id for key in issued.keys]
        assert await _status_of(other.get_key_with_ids(MASTER, ids)) == 401
        assert await _status_of(other.get_key_with_ids(MASTER, ids[:1])) == 401  # GET form too
        fetched = await slave.get_key_with_ids(MASTER, ids)
    assert _pairs(fetched.keys) == _pairs(issued.keys)


async def test_a_key_id_is_delivered_once_and_a_refused_batch_burns_nothing(regions: ProcessTestbed) -> None:
    async with regions.sae(MASTER) as master, regions.sae(SLAVE) as slave:
        issued = await master.get_key(SLAVE, KeyRequest(number=2))
        used, fresh = (key.key_id for key in issued.keys)
        assert _pairs((await slave.get_key_with_ids(MASTER, [used])).keys) == _pairs(issued.keys[:1])
        for use_post in (False, True):
            with pytest.raises(KmeError) as again:
                await slave.get_key_with_ids(MASTER, [used], use_post=use_post)
            assert again.value.status == 400 and again.value.error is not None
            assert again.value.error.message == MSG_KEYS_NOT_FOUND
            assert again.value.error.details == [{"key_ID_not_found": used}]
        with pytest.raises(KmeError) as mixed:  # all or nothing: the fresh key must survive this refusal
            await slave.get_key_with_ids(MASTER, [fresh, used])
        assert mixed.value.status == 400
        assert _pairs((await slave.get_key_with_ids(MASTER, [fresh])).keys) == _pairs(issued.keys[1:])


# ----- 4: SIGKILL of the middle gateway under load ----------------------------------------------------------


@dataclass
class LoadOutcome:
    keys: list[Key] = field(default_factory=list)
    successes: list[float] = field(default_factory=list)  # completion times
    errors: list[tuple[int, str]] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # no HTTP answer, or a malformed one
    latencies: list[float] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies)


async def _requester(testbed: ProcessTestbed, outcome: LoadOutcome, stop: asyncio.Event) -> None:
    async with testbed.sae(MASTER, timeout_s=CLIENT_TIMEOUT_S) as master:
        while not stop.is_set():
            started = time.monotonic()
            try:
                container = await master.get_key(SLAVE, KeyRequest(number=1))
            except KmeError as exc:
                outcome.errors.append((exc.status, exc.error.message if exc.error else ""))
            except (KmeUnreachable, KmeProtocolError) as exc:
                outcome.broken.append(repr(exc))
            else:
                outcome.keys.extend(container.keys)
                outcome.successes.append(time.monotonic())
            outcome.latencies.append(time.monotonic() - started)


async def _fetch_each_exactly_once(slave: Etsi014Client, keys: list[Key]) -> None:
    """The slave gets every key once with identical bytes; a second fetch is 400, naming every key_ID."""
    for start in range(0, len(keys), FETCH_BATCH):
        batch = keys[start : start + FETCH_BATCH]
        ids = [key.key_id for key in batch]
        fetched = await slave.get_key_with_ids(MASTER, ids, use_post=True)
        assert _pairs(fetched.keys) == _pairs(batch)
        with pytest.raises(KmeError) as again:
            await slave.get_key_with_ids(MASTER, ids, use_post=True)
        assert again.value.status == 400 and again.value.error is not None
        assert [detail["key_ID_not_found"] for detail in again.value.error.details or []] == ids


def _transfers(testbed: ProcessTestbed, gateway_id: str) -> dict[bytes, bytes]:
    """A gateway's transfer log (in its region's Redis): each transfer it received, and how it stands."""
    region = next(g.region for g in testbed.topology.gateways if g.id == gateway_id)
    with testbed.redis[region].client() as client:
        names = list(client.scan_iter(match=f"qkdr.{gateway_id}:xfer:*", count=1000))
        values = client.mget(names) if names else []
    return {name: value for name, value in zip(names, values, strict=True) if value is not None}


def _done_transfers(testbed: ProcessTestbed, gateway_id: str) -> set[bytes]:
    """Transfers a gateway finished: who forwarded what."""
    return {name for name, value in _transfers(testbed, gateway_id).items() if value.startswith(b"done:")}


async def test_sigkill_of_the_middle_gateway_mid_relay_loses_nothing_and_recovers(on_demand: ProcessTestbed) -> None:
    testbed = on_demand
    await round_trip(testbed, MASTER, SLAVE)
    outcome, stop = LoadOutcome(), asyncio.Event()
    relayed_by_gw2_at_start = _done_transfers(testbed, "GW2")
    tasks = [asyncio.create_task(_requester(testbed, outcome, stop)) for _ in range(8)]
    try:
        await asyncio.sleep(1.5)
        assert outcome.successes, "no key relayed before the kill"
        assert _done_transfers(testbed, "GW2") - relayed_by_gw2_at_start, "the load does not cross GW2"
        testbed.kill("GW2")  # SIGKILL while transfers cross it
        killed_at = time.monotonic()
        await asyncio.sleep(2.0)
        await testbed.restart_async("GW2")  # same command, same ports, same Redis
        restarted_at = time.monotonic()
        await asyncio.sleep(2.0)
    finally:
        stop.set()
        ended = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), CLIENT_TIMEOUT_S + 5)
    assert [result for result in ended if result is not None] == []

    while_down = sum(killed_at < t < restarted_at for t in outcome.successes)
    unavailable = sum(status == 503 for status, _ in outcome.errors)
    print(
        f"\nE2E SIGKILL GW2: {outcome.requests} requests, {len(outcome.successes)} succeeded "
        f"({while_down} while GW2 was down, {restarted_at - killed_at:.1f} s), {unavailable} answered 503, "
        f"{len(outcome.errors) - unavailable + len(outcome.broken)} other; "
        f"max latency {max(outcome.latencies):.2f} s"
    )
    for message, count in Counter(message for _, message in outcome.errors).most_common():
        print(f"  {count} x 503: {message}")

    # Every failure is a clean 503 naming the relay failure; nothing hung up to the client timeout.
    assert outcome.broken == []
    assert [(s, m) for s, m in outcome.errors if s != 503 or not m.startswith(f"cannot relay keys to {SLAVE}")] == []
    assert max(outcome.latencies) < CLIENT_TIMEOUT_S
    assert while_down > 0, "nothing was rerouted over the pqc-only GW1-GW3 link while GW2 was down"
    # No key_ID (or key) was handed to the master twice.
    assert len({key.key_id for key in outcome.keys}) == len({key.key for key in outcome.keys}) == len(outcome.keys)

    # Recovery by itself: requests succeed, and GW2 forwards them again once GW1 stops avoiding it.
    recovered: list[Key] = []
    async with testbed.sae(MASTER) as master, testbed.sae(SLAVE) as slave:

        async def gw2_relays_again() -> bool:
            """One request of the test's own: did it succeed, relayed through GW2?

            The load has ended, so a transfer GW2 had no record of before this request and finished during
            it is this request's. (What GW2 forwarded of the load after its restart does not count.)
            """
            known = set(_transfers(testbed, "GW2"))
            try:
                issued = await master.get_key(SLAVE, KeyRequest(number=1))
            except KmeError as exc:  # the load may have left GW2's require-qkd lane dry for a moment
                assert exc.status == 503 and exc.error is not None and "require-qkd" in exc.error.message
                return False
            recovered.extend(issued.keys)
            return bool(_done_transfers(testbed, "GW2") - known)

        await wait_until(gw2_relays_again, timeout_s=20, interval_s=0.3, what="GW2 forwarding again")
        everything = outcome.keys + recovered
        assert len(recovered) >= 1 and len({key.key_id for key in everything}) == len(everything)
        await _fetch_each_exactly_once(slave, everything)
    assert "unexpected failure" not in testbed.processes["GW1"].stderr_text()


# ----- 5: a cut link ------------------------------------------------------------------------------------------


async def test_with_gw2_gone_region3_is_reached_over_pqc_only_and_region2_answers_503(
    on_demand: ProcessTestbed,
) -> None:
    testbed = on_demand
    await round_trip(testbed, MASTER, SLAVE)
    await round_trip(testbed, MASTER, "SAE-R2-A")
    testbed.kill("GW2")

    async with testbed.sae(MASTER) as master, testbed.sae(SLAVE) as slave:
        for _ in range(3):  # the first finds GW2 dead and retries on a fresh route; the others avoid GW2
            issued = await master.get_key(SLAVE, KeyRequest(number=2))
            fetched = await slave.get_key_with_ids(MASTER, [key.key_id for key in issued.keys])
            assert _pairs(fetched.keys) == _pairs(issued.keys)
        with pytest.raises(KmeError) as no_route:
            await master.get_key("SAE-R2-A", KeyRequest(number=1))
    assert no_route.value.status == 503 and no_route.value.error is not None
    assert "no working route from GW1 to GW2" in no_route.value.error.message

    async with testbed.sae(SLAVE) as master_r3, testbed.sae(MASTER) as slave_r1:  # and the other way round
        issued = await master_r3.get_key(MASTER, KeyRequest(number=1))
        fetched = await slave_r1.get_key_with_ids(SLAVE, [issued.keys[0].key_id])
        assert _pairs(fetched.keys) == _pairs(issued.keys)
        assert await _status_of(master_r3.get_key("SAE-R2-A")) == 503


# ----- 6: QBER alarm on the require-qkd link ----------------------------------------------------------------


async def test_qber_alarm_on_a_require_qkd_link_stalls_with_503_and_recovers(scarce_qkd: ProcessTestbed) -> None:
    testbed = scarce_qkd
    await round_trip(testbed, "SAE-R2-A", SLAVE)
    halted = testbed.cli("kms-sim", "set-qber", "--kms", "KMS-R2", "QKD-GW2-GW3", "0.2")
    assert halted.returncode == 0 and "HALTED" in halted.stdout, halted.stderr

    async with testbed.sae("SAE-R2-A") as r2, testbed.sae(SLAVE) as r3, testbed.sae(MASTER) as r1:
        # The pool left in GW2's lane drains (each key still intact at GW3), then require-qkd stalls.
        stall = None
        for _ in range(30):
            try:
                issued = await r2.get_key(SLAVE, KeyRequest(number=1))
            except KmeError as exc:
                stall = exc
                break
            assert _pairs((await r3.get_key_with_ids("SAE-R2-A", [issued.keys[0].key_id])).keys) == _pairs(issued.keys)
        assert stall is not None and stall.status == 503 and stall.error is not None, "the QKD pool never ran dry"
        assert "require-qkd" in stall.error.message and "QKD-GW2-GW3" in stall.error.message

        # GW1 -> GW3 routes over GW2 (cost 2 < 3): it must stall too, never fall back to the pqc-only link.
        for _ in range(2):
            with pytest.raises(KmeError) as not_rerouted:
                await r1.get_key(SLAVE, KeyRequest(number=1))
            assert not_rerouted.value.status == 503 and not_rerouted.value.error is not None
            assert "require-qkd" in not_rerouted.value.error.message
        await wait_until(
            lambda: "QKD pool qkd:QKD-GW2-GW3:master-sends is empty" in testbed.processes["GW2"].stderr_text(),
            timeout_s=5,
            interval_s=0.2,
            what="GW2's empty-pool alarm",
        )

        # The eavesdropper leaves (admin API this time): key flows again, without restarting anything.
        async with aiohttp.ClientSession() as admin:
            url = f"{testbed.admin_url('KMS-R2')}/admin/links/QKD-GW2-GW3/qber"
            async with admin.put(url, json={"qber": 0.02}) as response:
                assert response.status == 200 and (await response.json())["halted"] is False

        async def relays_again() -> bool:
            try:
                issued = await r2.get_key(SLAVE, KeyRequest(number=2))
            except KmeError as exc:
                assert exc.status == 503
                return False
            fetched = await r3.get_key_with_ids("SAE-R2-A", [key.key_id for key in issued.keys])
            assert _pairs(fetched.keys) == _pairs(issued.keys)
            return True

        await wait_until(relays_again, timeout_s=10, interval_s=0.3, what="SAE-R2-A -> SAE-R3-A after the alarm")
        issued = await r1.get_key(SLAVE, KeyRequest(number=1))
        assert _pairs((await r3.get_key_with_ids(MASTER, [issued.keys[0].key_id])).keys) == _pairs(issued.keys)
