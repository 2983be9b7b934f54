"""How many keys each SAE pair asked for recently, kept in Redis in fixed time buckets.

Pre-relay keeps ready pools only for pairs that asked within the window (:mod:`relay.gateway.demand`), so
the requests must be counted somewhere every process serving the gateway can read: Redis, beside the
pools, so replicas of a gateway share one picture of demand and a restarted gateway keeps it. A request
only bumps a counter in memory; :meth:`DemandLog.exchange` adds those counts to the current bucket and
reads every bucket of the window back in one script, so the cost is one Redis call per refresh whatever
the number of pairs, and an idle pair is no member of any bucket at all.

A bucket is a sorted set (member: the pair as JSON, score: keys asked) under the shared ``{demand}`` hash
tag, expiring once it has left the window, so the log never grows beyond the active pairs of one window.
Bucket numbers come from the caller's wall clock: gateways whose clocks differ by a second split one
second's count across two buckets, which changes a rate, never a key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from relay.pool.connection import RedisBackend
from relay.pool.keys import Keyspace
from relay.pool.scripts import Script

Pair = tuple[str, str]  # (master SAE, slave SAE)


@dataclass(frozen=True)
class DemandLog:
    """Keys asked per SAE pair over the last ``buckets`` buckets of ``bucket_s`` seconds each."""

    backend: RedisBackend
    keyspace: Keyspace
    bucket_s: float
    buckets: int

    def __post_init__(self) -> None:
        if self.bucket_s <= 0 or self.buckets < 1:
            raise ValueError("a demand log needs a positive bucket length and at least one bucket")

    @property
    def window_s(self) -> float:
        return self.bucket_s * self.buckets

    async def exchange(self, asked: Mapping[Pair, int], now_s: float) -> dict[Pair, int]:
        """Add ``asked`` (keys per pair since the last call) to the bucket of ``now_s`` (Unix seconds);
        returns every pair's keys asked within the window, this call's included."""
        current = math.floor(now_s / self.bucket_s)
        names = [self.keyspace.demand(current - age) for age in range(self.buckets)]
        expires_at_ms = math.ceil((current + self.buckets + 1) * self.bucket_s * 1000)  # once out of the window
        args: list[str | bytes | int] = [expires_at_ms]
        for (master, slave), count in asked.items():
            if count > 0:
                args += [json.dumps([master, slave]), count]
        totals: dict[Pair, int] = {}
        for bucket in await self.backend.run(Script.DEMAND, names, args):
            for member, score in zip(bucket[::2], bucket[1::2], strict=True):
                master, slave = json.loads(member)
                totals[(master, slave)] = totals.get((master, slave), 0) + int(float(score))
        return totals
