"""A foreign KMS domain run by another vendor (KMS-X, bordered by GW3) as a peer over ETSI 020, with real
processes: the three-region testbed plus the foreign domain's stand-in (``kms-sim run --kms KMS-X``).

Both directions: SAE-R1-A's key for SAE-X-A crosses our gateways to GW3, which hands it over with
ext_keys; SAE-X-A's key for one of our SAEs is handed to GW3 and relayed to that SAE's region. Then the
foreign KMS failing in each way it can: down, answering 503, acking ``failed``, acking past the deadline,
acking twice; and the master leaving before its answer. Each time: the master gets a key only if the
foreign SAE can fetch it, exactly once, and nothing stays deliverable after a void.

One testbed serves the module: each test sets the foreign KMS's behaviour and the fixture puts it back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.etsi014.client import KmeError, KmeUnreachable
from relay.etsi014.models import KeyRequest
from relay.kms_sim.foreign import Behaviour
from tests.support.process_testbed import ProcessTestbed, cli, round_trip

FOREIGN, BORDER = "KMS-X", "GW3"
MASTER, FOREIGN_SAE = "SAE-R1-A", "SAE-X-A"
DEADLINE_S = 1.5
HOPS_MARGIN_S = 1.0  # the hops to the border and back, and the 014 round trip, on a busy machine


@pytest.fixture(scope="module")
def keys_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("foreign-keys")
    result = cli("keys", "init", "--keys", str(root))
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory, keys_root: Path) -> Iterator[ProcessTestbed]:
    """On demand only, so every key crosses the border when asked for; a short deadline keeps it quick."""
    running = ProcessTestbed(
        tmp_path_factory.mktemp("foreign"),
        keys_root,
        gateway_options=["--no-prerelay", "--foreign-ack-deadline", str(DEADLINE_S)],
        kms_options=["--initial-keys", "2000"],
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def foreign(testbed: ProcessTestbed) -> AsyncIterator[ProcessTestbed]:
    """The testbed with the foreign KMS answering normally again after the test."""
    if not testbed.processes[FOREIGN].running:
        await testbed.restart_async(FOREIGN)
    yield testbed
    if not testbed.processes[FOREIGN].running:
        await testbed.restart_async(FOREIGN)
    await behave(testbed, Behaviour.NORMAL)


async def handover(testbed: ProcessTestbed, body: dict[str, Any] | None = None) -> dict[str, Any]:
    url = f"{testbed.admin_url(FOREIGN)}/admin/handover"
    async with aiohttp.ClientSession() as session:
        async with session.request("PUT" if body else "GET", url, json=body) as response:
            assert response.status == 200, await response.text()
            answer: dict[str, Any] = await response.json()
            return answer


async def behave(testbed: ProcessTestbed, behaviour: Behaviour, delay_s: float = 0.0) -> None:
    await handover(testbed, {"behaviour": str(behaviour), "delay_s": delay_s})


async def counts(testbed: ProcessTestbed) -> dict[str, int]:
    answer = await handover(testbed)
    return dict(answer["counts"])


async def eventually(testbed: ProcessTestbed, done: Callable[[dict[str, int]], bool]) -> dict[str, int]:
    """The foreign KMS's counts once ``done`` holds for them (within 10 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not done(current := await counts(testbed)):
        assert loop.time() < deadline, f"counts never settled: {current}"
        await asyncio.sleep(0.2)
    return current


async def refused_enc_keys(testbed: ProcessTestbed) -> KmeError:
    async with testbed.sae(MASTER) as master:
        with pytest.raises(KmeError) as refused:
            await master.get_key(FOREIGN_SAE, KeyRequest(number=1))
    return refused.value


async def test_keys_cross_the_border_in_both_directions_byte_identical(foreign: ProcessTestbed) -> None:
    await round_trip(foreign, MASTER, FOREIGN_SAE)  # relayed GW1 -> GW3, handed over with ext_keys
    await round_trip(foreign, FOREIGN_SAE, MASTER)  # handed to GW3, relayed to region 1
    await round_trip(foreign, "SAE-X-B", "SAE-R2-A")  # any of our SAEs, in any region


async def test_a_key_handed_over_is_fetched_once(foreign: ProcessTestbed) -> None:
    async with foreign.sae(MASTER) as master, foreign.sae(FOREIGN_SAE) as slave:
        issued = (await master.get_key(FOREIGN_SAE, KeyRequest(number=2))).keys
        fetched = await slave.get_key_with_ids(MASTER, [key.key_id for key in issued])
        assert fetched.keys == issued
        with pytest.raises(KmeError) as again:
            await slave.get_key_with_ids(MASTER, [issued[0].key_id])
    assert again.value.status == 400


@pytest.mark.parametrize("behaviour", [Behaviour.FAIL, Behaviour.UNAVAILABLE])
async def test_a_failed_ack_or_a_503_gives_the_master_503_and_stores_nothing(
    foreign: ProcessTestbed, behaviour: Behaviour
) -> None:
    await behave(foreign, behaviour)
    before = await counts(foreign)
    assert (await refused_enc_keys(foreign)).status == 503
    assert (await counts(foreign))["stored"] == before["stored"]
    await behave(foreign, Behaviour.NORMAL)
    await round_trip(foreign, MASTER, FOREIGN_SAE)


async def test_an_ack_past_the_deadline_voids_the_key_and_the_late_ack_changes_nothing(
    foreign: ProcessTestbed,
) -> None:
    await behave(foreign, Behaviour.SLOW, delay_s=DEADLINE_S + 1.0)
    before = await counts(foreign)
    asked = time.monotonic()
    assert (await refused_enc_keys(foreign)).status == 503
    waited_s = time.monotonic() - asked
    # every attempt shares the one deadline (before: a retry waited it out again, about twice as long)
    assert waited_s < DEADLINE_S + HOPS_MARGIN_S, waited_s
    # the late ext_keys (one per attempt, each with a fresh key) finish: their voids came first, so they
    # store nothing, and GW3 answers their late acks with 200 (the sender counts only those)
    after = await eventually(
        foreign, lambda c: c["acks_sent"] - before["acks_sent"] == c["received"] - before["received"]
    )
    assert after["received"] > before["received"]
    assert after["stored"] == before["stored"]


async def test_duplicate_acks_deliver_the_key_once(foreign: ProcessTestbed) -> None:
    await behave(foreign, Behaviour.DUPLICATE)
    before = await counts(foreign)
    async with foreign.sae(MASTER) as master, foreign.sae(FOREIGN_SAE) as slave:
        issued = (await master.get_key(FOREIGN_SAE, KeyRequest(number=1))).keys
        assert (await slave.get_key_with_ids(MASTER, [issued[0].key_id])).keys == issued
        with pytest.raises(KmeError):
            await slave.get_key_with_ids(MASTER, [issued[0].key_id])
    after = await counts(foreign)
    assert after["acks_sent"] == before["acks_sent"] + 2  # both accepted by GW3 with 200


async def test_a_master_that_leaves_before_its_answer_has_the_key_voided_at_the_foreign_kms(
    foreign: ProcessTestbed,
) -> None:
    await behave(foreign, Behaviour.SLOW, delay_s=DEADLINE_S / 2)  # acked in time, after the master left
    before = await counts(foreign)
    async with foreign.sae(MASTER, timeout_s=DEADLINE_S / 4) as impatient:
        with pytest.raises(KmeUnreachable):
            await impatient.get_key(FOREIGN_SAE, KeyRequest(number=1))
    after = await eventually(foreign, lambda c: c["voided"] > before["voided"])
    assert after["stored"] == before["stored"] + 1 and after["voided"] == before["voided"] + 1


async def test_the_foreign_kms_down_gives_503_and_it_recovers(foreign: ProcessTestbed) -> None:
    foreign.kill(FOREIGN)
    assert (await refused_enc_keys(foreign)).status == 503
    await foreign.restart_async(FOREIGN)
    await round_trip(foreign, MASTER, FOREIGN_SAE)
    await round_trip(foreign, FOREIGN_SAE, MASTER)
