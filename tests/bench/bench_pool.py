"""Benchmark: QKD pool takes per second and take latency, on a single Redis and on a 3-master cluster.

Run: ``python tests/bench/bench_pool.py [--duration 5] [--concurrency 1,16,64]`` (or ``python -m
tests.bench.bench_pool``). It starts its own private redis-server processes (tests/support/redis_servers.py) and
prints a markdown table. Each take is the full path a hop sender pays: one atomic Lua script (prune,
pick oldest, delete, tombstone) plus AES-GCM opening of the sealed key. A background refiller keeps the
pool stocked with sealed batches while the takers run, as the QKD filler would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable for tests.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from relay.crypto.at_rest import StorageCipher
from relay.domain import Key
from relay.pool.connection import RedisBackend, RedisConfig
from relay.pool.errors import PoolEmpty
from relay.pool.keys import Keyspace
from relay.pool.qkd_pool import QkdPool, QkdPoolSettings, Role
from tests.support.redis_servers import redis_cluster, redis_server

REFILL_BATCH = 500
STOCK = 20_000


@dataclass(frozen=True)
class Result:
    deployment: str
    concurrency: int
    takes: int
    seconds: float
    latencies_ms: list[float]

    def row(self) -> str:
        quantiles = statistics.quantiles(self.latencies_ms, n=100)
        return (
            f"| {self.deployment} | {self.concurrency} | {self.takes} | {self.takes / self.seconds:,.0f} "
            f"| {quantiles[49]:.2f} | {quantiles[98]:.2f} |"
        )


def _keys(number: int) -> list[Key]:
    return [Key(str(uuid.uuid4()), os.urandom(32)) for _ in range(number)]


async def _refill(pool: QkdPool, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if await pool.level() < STOCK // 2:
            await pool.put(_keys(REFILL_BATCH))
        else:
            await asyncio.sleep(0.01)


async def _taker(pool: QkdPool, deadline: float, latencies: list[float]) -> None:
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        try:
            await pool.take(1)
        except PoolEmpty:
            await asyncio.sleep(0.001)  # the refiller fell behind; not a take
            continue
        latencies.append((time.perf_counter() - start) * 1000)


async def measure(config: RedisConfig, deployment: str, concurrency: int, duration: float) -> Result:
    async with RedisBackend.connect(config) as backend:
        keyspace = Keyspace(f"bench{uuid.uuid4().hex[:8]}")
        pool = QkdPool(backend, StorageCipher(os.urandom(32)), keyspace, "L-bench", Role.MASTER, QkdPoolSettings())
        for _ in range(STOCK // REFILL_BATCH):
            await pool.put(_keys(REFILL_BATCH))
        stop = asyncio.Event()
        refiller = asyncio.create_task(_refill(pool, stop))
        latencies: list[float] = []
        start = time.perf_counter()
        await asyncio.gather(*(_taker(pool, start + duration, latencies) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        stop.set()
        await refiller
    return Result(deployment, concurrency, len(latencies), elapsed, latencies)


@contextmanager
def deployment(kind: str, directory: Path, max_in_flight: int) -> Iterator[RedisConfig]:
    if kind == "cluster":
        with redis_cluster(directory) as cluster:
            yield RedisConfig(cluster.admin_url, cluster=True, max_in_flight=max_in_flight)
    else:
        with redis_server(directory) as server:
            yield RedisConfig(server.admin_url, max_in_flight=max_in_flight)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated numbers of concurrent takers")
    parser.add_argument("--deployments", default="standalone,cluster")
    parser.add_argument("--max-in-flight", type=int, default=64, help="RedisConfig.max_in_flight")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    results = []
    for kind in args.deployments.split(","):
        with tempfile.TemporaryDirectory() as tmp, deployment(kind, Path(tmp), args.max_in_flight) as config:
            for concurrency in concurrencies:
                results.append(asyncio.run(measure(config, kind, concurrency, args.duration)))
    print(f"QKD pool take_any, {args.duration:g} s per row, one client process, max_in_flight {args.max_in_flight}")
    print()
    print("| deployment | concurrent takers | takes | takes/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for result in results:
        print(result.row())


if __name__ == "__main__":
    main()
