"""Watermarks and the status view of every pool level."""

from __future__ import annotations

import pytest

from relay.crypto.at_rest import StorageCipher
from relay.pool.connection import RedisBackend
from relay.pool.keys import Keyspace
from relay.pool.qkd_pool import QkdPoolSettings, Role, link_pools
from relay.pool.status import PoolStatus, pool_status
from relay.pool.watermarks import PoolState, Watermarks
from tests.support.pool_data import make_keys


@pytest.mark.parametrize(
    ("level", "state"), [(0, PoolState.EMPTY), (1, PoolState.LOW), (9, PoolState.LOW), (10, PoolState.OK)]
)
def test_state_from_level(level: int, state: PoolState) -> None:
    assert Watermarks(low=10, high=50).state(level) is state


def test_deficit_is_what_reaches_high() -> None:
    marks = Watermarks(low=10, high=50)
    assert (marks.deficit(0), marks.deficit(49), marks.deficit(50), marks.deficit(60)) == (50, 1, 0, 0)


@pytest.mark.parametrize(("low", "high"), [(-1, 5), (6, 5), (0, 0)])
def test_invalid_watermarks(low: int, high: int) -> None:
    with pytest.raises(ValueError):
        Watermarks(low, high)


async def test_status_lists_every_lane(backend: RedisBackend, cipher: StorageCipher, keyspace: Keyspace) -> None:
    settings = QkdPoolSettings(watermarks=Watermarks(low=2, high=4))
    pools = link_pools(backend, cipher, keyspace, "L-9", settings)
    await pools[Role.MASTER].put(make_keys(3))
    assert await pool_status(pools.values()) == [
        PoolStatus("qkd:L-9:master-sends", 3, 2, 4, PoolState.OK),
        PoolStatus("qkd:L-9:slave-sends", 0, 2, 4, PoolState.EMPTY),
    ]
