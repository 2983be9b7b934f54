"""Token buckets in Redis: an SAE pair's fair share of relayed keys and of each QKD link's key.

Every replica of a gateway shares one Redis, so the buckets live there and one Lua script
(:data:`relay.pool.scripts.Script.TAKE_TOKENS`) refills and debits all of a request's buckets at once:
either every bucket pays its cost or none does, so a request refused on one bucket spends nothing from
the others. Time is the Redis server's, so replicas with skewed clocks agree. A call whose reply was
lost to a dropped connection may be retried by the client and charge twice: fail-safe, a pair can lose
tokens that way but never gain any.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relay.pool.connection import RedisBackend
from relay.pool.keys import Keyspace
from relay.pool.scripts import Script


@dataclass(frozen=True)
class Bucket:
    name: str  # unique per SAE pair, e.g. "keys" or "qkd:<link>"
    capacity: float
    per_s: float  # refill rate, tokens per second
    cost: float  # what this request takes

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.per_s <= 0 or self.cost < 0:
            raise ValueError("a bucket needs a positive capacity and rate and a cost of at least 0")


@dataclass(frozen=True)
class Shortfall:
    """The first bucket that cannot pay: ``retry_after_s`` until it could, None if its cost exceeds its capacity."""

    bucket: Bucket
    retry_after_s: float | None


class TokenBuckets:
    def __init__(self, backend: RedisBackend, keyspace: Keyspace) -> None:
        self._backend = backend
        self._keyspace = keyspace

    async def take(self, master_sae_id: str, slave_sae_id: str, buckets: Sequence[Bucket]) -> Shortfall | None:
        """Debit every bucket of the pair, or none; None when all paid."""
        if not buckets:
            return None
        names = [self._keyspace.share(master_sae_id, slave_sae_id, bucket.name) for bucket in buckets]
        args = [repr(float(value)) for b in buckets for value in (b.capacity, b.per_s, b.cost)]
        index, wait_ms = await self._backend.run(Script.TAKE_TOKENS, names, args)
        if int(index) == 0:
            return None
        return Shortfall(buckets[int(index) - 1], None if int(wait_ms) < 0 else int(wait_ms) / 1000)
