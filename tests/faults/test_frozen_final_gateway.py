"""No key is lost to a caller that has gone (issue 15, section 2), with real processes.

The final gateway GW3 is frozen with SIGSTOP while slaves, on TLS connections already open to it, call
``dec_keys`` with a short client timeout and give up. Their requests sit in GW3's socket buffers, each
followed by the client's close. Before the fix, GW3 executed them after SIGCONT and consumed keys nobody
received (the retry got 400). Now each is reserved, found abandoned and released: the retry of the same
key_IDs gets the very keys the master holds, and a second fetch is 400 (none delivered twice).
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from relay.domain import Key
from relay.etsi014.client import Etsi014Client, KmeError, KmeUnreachable
from relay.etsi014.models import KeyRequest
from tests.support.process_testbed import ProcessTestbed, round_trip

PAIRS = [("SAE-R1-A", "SAE-R3-A"), ("SAE-R1-B", "SAE-R3-B")]
BATCHES_PER_PAIR = 4
KEYS_PER_BATCH = 2
GIVE_UP_AFTER_S = 1.5  # the slaves' client timeout while GW3 is frozen
FROZEN_S = 3.0


async def test_requests_abandoned_at_a_frozen_gateway_lose_no_key(on_demand_testbed: ProcessTestbed) -> None:
    testbed = on_demand_testbed
    await round_trip(testbed, *PAIRS[0])
    batches: list[tuple[str, str, tuple[Key, ...]]] = []
    for master, slave in PAIRS:
        async with testbed.sae(master) as client:
            for _ in range(BATCHES_PER_PAIR):
                issued = await client.get_key(slave, KeyRequest(number=KEYS_PER_BATCH))
                batches.append((master, slave, issued.keys))

    # One client (one TLS connection, opened now) per abandoned request: a frozen process cannot handshake.
    clients = [testbed.sae(slave, timeout_s=GIVE_UP_AFTER_S) for _, slave, _ in batches]
    try:
        for client, (master, _, _) in zip(clients, batches, strict=True):
            await client.get_status(master)
        gw3 = testbed.processes["GW3"].process
        assert gw3 is not None
        os.kill(gw3.pid, signal.SIGSTOP)
        try:
            outcomes = await asyncio.gather(
                *(_abandon(client, master, keys) for client, (master, _, keys) in zip(clients, batches, strict=True))
            )
            await asyncio.sleep(FROZEN_S - GIVE_UP_AFTER_S)
        finally:
            os.kill(gw3.pid, signal.SIGCONT)
    finally:
        for client in clients:
            await client.close()
    abandoned = sum(outcomes)

    recovered = lost = twice = 0
    for master, slave, keys in batches:
        async with testbed.sae(slave) as client:
            fetched = await _fetch_with_retries(client, master, keys)
            if fetched is None:
                lost += len(keys)
                continue
            assert [(k.key_id, k.key) for k in fetched] == [(k.key_id, k.key) for k in keys]
            recovered += len(fetched)
            with pytest.raises(KmeError) as again:
                await client.get_key_with_ids(master, [k.key_id for k in keys])
            if again.value.status != 400:
                twice += len(keys)
    given_back = testbed.processes["GW3"].stderr_text().count("left before its answer")
    print(
        f"\nFREEZE of GW3 (final gateway) for {FROZEN_S:.1f} s: {abandoned} dec_keys requests "
        f"({abandoned * KEYS_PER_BATCH} keys) abandoned after {GIVE_UP_AFTER_S} s; GW3 gave back {given_back} "
        f"reservations after SIGCONT; {recovered} keys recovered on retry, {lost} lost, {twice} delivered twice"
    )
    assert abandoned == len(batches)
    assert (recovered, lost, twice) == (len(batches) * KEYS_PER_BATCH, 0, 0)


async def _abandon(client: Etsi014Client, master: str, keys: tuple[Key, ...]) -> bool:
    """True if the slave gave up waiting (the outcome this test sets up)."""
    try:
        await client.get_key_with_ids(master, [k.key_id for k in keys], use_post=True)
    except KmeUnreachable:
        return True
    return False


async def _fetch_with_retries(client: Etsi014Client, master: str, keys: tuple[Key, ...]) -> tuple[Key, ...] | None:
    """The keys, or None if GW3 no longer has them (400); a 503 "being delivered" is retried."""
    for _ in range(50):
        try:
            return (await client.get_key_with_ids(master, [k.key_id for k in keys])).keys
        except KmeError as exc:
            if exc.status == 400:
                return None
            assert exc.status == 503 and exc.error is not None and "being delivered" in exc.error.message, exc
            await asyncio.sleep(0.1)
    raise AssertionError(f"keys from {master} stayed in delivery")
