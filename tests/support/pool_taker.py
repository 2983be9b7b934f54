"""A stand-in gateway process for the shared-pool test: takes keys from one QKD lane until it is empty.

Prints ``ready``, waits for a line on stdin (so that all processes start taking together), then prints
one key_ID per key taken and ``done``. Key material is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from relay.crypto.at_rest import StorageCipher, load_or_create_storage_key
from relay.pool.connection import RedisBackend, RedisConfig
from relay.pool.errors import PoolEmpty
from relay.pool.keys import Keyspace
from relay.pool.qkd_pool import QkdPool, QkdPoolSettings, Role


async def take_all(args: argparse.Namespace) -> None:
    cipher = StorageCipher(load_or_create_storage_key(Path(args.storage_key)))
    async with RedisBackend.connect(RedisConfig(args.url, cluster=args.cluster)) as backend:
        pool = QkdPool(backend, cipher, Keyspace(args.prefix), args.link, Role(args.sender), QkdPoolSettings())
        await pool.level()  # connect before reporting ready
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        while True:
            try:
                (key,) = await pool.take(1)
            except PoolEmpty:
                break
            print(key.key_id, flush=True)
    print("done", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--link", required=True)
    parser.add_argument("--sender", default="master")
    parser.add_argument("--storage-key", required=True)
    asyncio.run(take_all(parser.parse_args()))


if __name__ == "__main__":
    main()
