"""Benchmark: what relayed keys leave in the receiving gateway's Redis, and that it levels off.

Run: ``python tests/bench/bench_memory.py [--keys 2000] [--seconds 15] [--rate 256]`` (or ``python -m
tests.bench.bench_memory``). It provisions the ``loadtest-pool`` topology (GW1 - GW2, pqc-only) in a
temporary directory, starts a private redis-server and both gateways in this process (no pre-relay),
and relays with real 014 clients, in two parts:

1. **Per key**, default settings: ``--keys`` keys relayed GW1 -> GW2 and left waiting, then all fetched
   by the slave. GW2's names are summed with ``MEMORY USAGE`` per family (sealed key hashes, the store's
   index, tombstones, transfer records, replay entries) and divided by the keys relayed; the review's
   figures before bounded tombstones (897 bytes waiting, 640 after delivery) are printed beside them.
2. **Sustained**, short lifetimes (waiting keys 3 s, ID window 3 + 1 s, hop window 1.5 s): ``--rate``
   keys/s for ``--seconds``, every other batch fetched and the rest left to expire. GW2's bytes are
   sampled twice a second; they must level off once the longest lifetime (the ID window plus the skew,
   5 s) has passed, instead of growing with the traffic.

The floor, measured in the same Redis: one sealed 256-bit key stored as a bare Redis string under a
key_ID-sized name, the least any store could keep per waiting key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable for tests.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import redis.asyncio

from relay import topology as topology_module
from relay.crypto.at_rest import StorageCipher
from relay.domain import gateway_key_prefix, new_key_id
from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings
from relay.loadtest.topologies import POOL, document_for
from relay.pki.layout import KeyDirectory
from relay.pki.provision import provision
from relay.pool.relayed_store import RelayedStoreSettings
from tests.support.local_testbed import LocalTestbed, running_testbed
from tests.support.redis_servers import redis_server

MASTER, SLAVE, RECEIVER = "SAE-C1-A", "SAE-C2-A", "GW2"
BATCH = 16  # keys per enc_keys
BEFORE = {"waiting": 897, "delivered": 640}  # bytes per key in GW2's Redis, measured by the review (issue 14)
SHORT = RelayedStoreSettings(ready_ttl_s=2.0, waiting_ttl_s=3.0, retired_ttl_s=6.0, clock_skew_s=1.0)
SHORT_HOP_WINDOW_S = 1.5
FAMILIES = (  # (name, pattern after GW2's prefix)
    ("sealed keys", re.compile(r":\{slave:[^}]*\}:k:")),
    ("store index", re.compile(r":\{slave:[^}]*\}:idx$")),
    ("tombstones", re.compile(r":\{slave:[^}]*\}:used$")),
    ("transfer records", re.compile(r":xfer:")),
    ("replay entries", re.compile(r":\{replay\}:")),
)


ZSET_FAMILIES = ("store index", "tombstones")  # one sorted set per store: entries are its members
DEFAULT = RelayedStoreSettings()
DEFAULT_LIFETIMES_S = {  # how long each entry of a delivered key lives at most, default settings
    "tombstones": DEFAULT.id_window_s + DEFAULT.clock_skew_s,
    "transfer records": 2 * GatewaySettings().hop_window_s,
    "replay entries": 2 * GatewaySettings().hop_window_s,
}
BEFORE_LIFETIMES_S = {"tombstones": 86_400.0, "transfer records": 900.0, "replay entries": 240.0}
PROJECTED_RATE = 1000.0  # keys/s, the example


@dataclass(frozen=True)
class Snapshot:
    bytes_by_family: dict[str, int]
    entries_by_family: dict[str, int]  # names, or sorted-set members
    used_memory: int

    @property
    def total(self) -> int:
        return sum(self.bytes_by_family.values())


async def snapshot(admin: redis.asyncio.Redis) -> Snapshot:
    """GW2's names by family (MEMORY USAGE, every element counted) and the server's used_memory."""
    prefix = gateway_key_prefix(RECEIVER)
    names = [name async for name in admin.scan_iter(match=f"{prefix}:*", count=1000)]
    pipe = admin.pipeline(transaction=False)
    for name in names:
        pipe.execute_command("MEMORY", "USAGE", name, "SAMPLES", "0")
        pipe.type(name)
        pipe.zcard(name)  # an error answer for names of other types, skipped below
    answers = await pipe.execute(raise_on_error=False)
    sizes: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for i, name in enumerate(names):
        usage, kind, members = answers[3 * i : 3 * i + 3]
        family = next((f for f, pattern in FAMILIES if pattern.search(name.decode()[len(prefix) :])), "other")
        sizes[family] += int(usage or 0)
        counts[family] += int(members) if kind == b"zset" else 1
    info = await admin.info("memory")
    return Snapshot(dict(sizes), dict(counts), int(info["used_memory"]))


async def floor_bytes(admin: redis.asyncio.Redis) -> int:
    """One sealed 256-bit key as a bare string under a key_ID-sized name."""
    name = f"floor:{new_key_id()}"
    blob = StorageCipher(os.urandom(32)).seal(name, os.urandom(32))
    await admin.set(name, blob)
    usage = int(await admin.execute_command("MEMORY", "USAGE", name, "SAMPLES", "0"))
    await admin.delete(name)
    return usage


@asynccontextmanager
async def gateways(keys: KeyDirectory, redis_url: str, settings: GatewaySettings) -> AsyncIterator[LocalTestbed]:
    async with running_testbed(keys, redis_url, settings, document=document_for(POOL)) as testbed:
        yield testbed


async def relay_and_maybe_fetch(testbed: LocalTestbed, fetch: bool) -> list[str]:
    async with testbed.sae(MASTER) as master:
        issued = await master.get_key(SLAVE, KeyRequest(number=BATCH))
    key_ids = [key.key_id for key in issued.keys]
    if fetch:
        async with testbed.sae(SLAVE) as slave:
            await slave.get_key_with_ids(MASTER, key_ids)
    return key_ids


def family_lines(label: str, snap: Snapshot, keys: int, baseline: Snapshot) -> list[str]:
    per_key = snap.total / keys
    used = (snap.used_memory - baseline.used_memory) / keys
    lines = [f"{label}: {per_key:,.0f} bytes per key (families) / {used:,.0f} (used_memory delta)"]
    for family, _ in FAMILIES:
        size, entries = snap.bytes_by_family.get(family, 0), snap.entries_by_family.get(family, 0)
        lines.append(f"    {family:<17} {size / keys:7.1f} B/key  ({entries} entries)")
    return lines


async def per_key_part(keys: KeyDirectory, redis_url: str, admin: redis.asyncio.Redis, number: int) -> list[str]:
    async with gateways(keys, redis_url, GatewaySettings(prerelay=False)) as testbed:
        baseline = await snapshot(admin)
        batches: list[list[str]] = []
        for start in range(0, number, BATCH * 8):
            count = min(8, (number - start + BATCH - 1) // BATCH)
            batches += await asyncio.gather(*(relay_and_maybe_fetch(testbed, False) for _ in range(count)))
        relayed = sum(len(batch) for batch in batches)
        waiting = await snapshot(admin)
        async with testbed.sae(SLAVE) as slave:
            for batch in batches:
                await slave.get_key_with_ids(MASTER, batch)
        delivered = await snapshot(admin)
    lines = [f"## Per key: {relayed} keys relayed GW1 -> GW2, default lifetimes (waiting 300 s, hop window 120 s)"]
    lines += family_lines("waiting", waiting, relayed, baseline)
    lines += family_lines("after delivery", delivered, relayed, baseline)
    lines.append(
        f"before (review): {BEFORE['waiting']} bytes per key waiting, {BEFORE['delivered']} after delivery, "
        "tombstones kept 86,400 s"
    )
    lines += projection(delivered, relayed)
    return lines


def projection(delivered: Snapshot, keys: int) -> list[str]:
    """What delivered keys hold at a steady rate: bytes per entry x entries per second x lifetime."""

    def steady_bytes(lifetimes: dict[str, float]) -> float:
        return sum(delivered.bytes_by_family.get(f, 0) / keys * PROJECTED_RATE * life for f, life in lifetimes.items())

    now, before = steady_bytes(DEFAULT_LIFETIMES_S), steady_bytes(BEFORE_LIFETIMES_S)
    longest = max(DEFAULT_LIFETIMES_S.values())
    return [
        f"at {PROJECTED_RATE:,.0f} keys/s delivered, default settings: levels off at {now / 1e6:,.0f} MB after "
        f"{longest:,.0f} s; before: {before / 1e9:,.1f} GB after a day (tombstones 86,400 s, records 900 s)"
    ]


async def sustained_part(
    keys: KeyDirectory, redis_url: str, admin: redis.asyncio.Redis, rate: float, seconds: float
) -> list[str]:
    settings = GatewaySettings(prerelay=False, hop_window_s=SHORT_HOP_WINDOW_S, relayed_store=SHORT)
    longest_s = SHORT.id_window_s + SHORT.clock_skew_s  # a time-bound tombstone's longest life
    samples: list[tuple[float, Snapshot]] = []
    relayed = 0
    async with gateways(keys, redis_url, settings) as testbed:
        started = time.monotonic()
        tasks: set[asyncio.Task[list[str]]] = set()
        next_sample, batch_index = 0.0, 0
        while (elapsed := time.monotonic() - started) < seconds:
            if elapsed >= batch_index * BATCH / rate:
                task = asyncio.create_task(relay_and_maybe_fetch(testbed, fetch=batch_index % 2 == 0))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                batch_index += 1
            if elapsed >= next_sample:
                samples.append((elapsed, await snapshot(admin)))
                next_sample += 0.5
            await asyncio.sleep(0.005)
        done = await asyncio.gather(*tasks, return_exceptions=True)
        relayed = (batch_index - len([d for d in done if isinstance(d, BaseException)])) * BATCH
    achieved = relayed / seconds
    settled = [snap.total for at, snap in samples if at >= longest_s]
    half = len(settled) // 2
    early, late = max(settled[:half]), max(settled[half:])
    lines = [
        f"## Sustained: {achieved:,.0f} keys/s offered {rate:,.0f} for {seconds:.0f} s, half fetched, half left to "
        f"expire; waiting keys {SHORT.waiting_ttl_s:.0f} s, ID window {SHORT.id_window_s:.0f} s + skew "
        f"{SHORT.clock_skew_s:.0f} s, hop window {SHORT_HOP_WINDOW_S} s",
        "t (s)  GW2 bytes  used_memory  sealed  tombstones  xfer  replay (entries)",
    ]
    for at, snap in samples[::2]:
        n = snap.entries_by_family
        lines.append(
            f"{at:5.1f}  {snap.total:9,}  {snap.used_memory:11,}  {n.get('sealed keys', 0):6}"
            f"  {n.get('tombstones', 0):10}  {n.get('transfer records', 0):4}  {n.get('replay entries', 0):6}"
        )
    verdict = "levels off" if late <= 1.25 * early else "still GROWING"
    lines.append(
        f"after {longest_s:.0f} s (longest lifetime): peak {early:,} bytes in the first half, {late:,} in the second: "
        f"{verdict} (steady state {late / max(achieved, 1):,.0f} bytes per key/s of traffic)"
    )
    return lines


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        root = Path(tmp)
        topology = topology_module.parse(document_for(POOL))
        keys = provision(topology, root / "keys").directory
        gateway_ids = tuple(gateway.id for gateway in topology.gateways)
        with redis_server(root / "redis", keys=keys, gateways=gateway_ids) as server:
            admin = redis.asyncio.Redis.from_url(server.admin_url)
            try:
                floor = await floor_bytes(admin)
                lines = await per_key_part(keys, server.url, admin, args.keys)
                await admin.flushall()
                lines += await sustained_part(keys, server.url, admin, args.rate, args.seconds)
            finally:
                await admin.aclose()
    lines.append(f"floor: one sealed 256-bit key as a bare Redis string: {floor} bytes (same Redis)")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=256.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    args: Any = parser.parse_args(argv)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
