"""The process testbed with gateways run as replicas, for the tests that kill or freeze one of them.

Every default-size key is relayed on demand (no pre-relay), so each request crosses the replicas under
test. QKD-GW2-GW3 is require-qkd: its lanes must hold what the load spends while the QKD filler's lease
passes from a lost holder to the survivor (up to the lease's 3 s time to live plus one try), as the
README tells operators to size them; :func:`qkd_lanes_filled` waits until the filler got them there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.support.admin_http import get_json
from tests.support.local_testbed import default_document
from tests.support.process_testbed import ManagedProcess, ProcessTestbed, running_with_aof

QKD_POOL_HIGH = 1024  # per lane: several seconds of the tests' load
GATEWAY_OPTIONS = [
    "--no-prerelay",
    "--hop-timeout",
    "3",
    "--qkd-pool",
    f"16:{QKD_POOL_HIGH}",
    "--qkd-fill-batch",
    "512",
]


def with_replicas(document: dict[str, Any], gateway_ids: Sequence[str], replicas: int = 2) -> dict[str, Any]:
    """The topology document with ``gateway_ids`` run as ``replicas`` processes each (modified in place)."""
    for region in document["regions"]:
        for gateway in region["gateways"]:
            if gateway["id"] in gateway_ids:
                gateway["replicas"] = replicas
    return document


def replicated_testbed(directory: Path, keys_root: Path, gateway_ids: Sequence[str]) -> Iterator[ProcessTestbed]:
    """A fixture's body: the three regions with ``gateway_ids`` as two replicas each, AOF on every Redis."""
    testbed = ProcessTestbed(
        directory,
        keys_root,
        gateway_options=GATEWAY_OPTIONS,
        kms_options=["--initial-keys", "5000"],
        document=with_replicas(default_document(), gateway_ids),
    )
    yield from running_with_aof(testbed)


def admin_url(testbed: ProcessTestbed, gateway_id: str, replica: int) -> str:
    gateway = next(g for g in testbed.topology.gateways if g.id == gateway_id)
    return f"http://127.0.0.1:{gateway.replica_admin_port(replica)}"


async def qkd_lanes_filled(testbed: ProcessTestbed, gateway_id: str, neighbour: str) -> None:
    """Until every QKD lane of ``gateway_id`` towards ``neighbour`` is at its high watermark (admin /status)."""
    url = f"{admin_url(testbed, gateway_id, 1)}/status"
    deadline = time.monotonic() + 30
    while True:
        _, document = await get_json(url)
        (link,) = (link for link in document["links"] if link["neighbour"] == neighbour)
        levels = [lane["level"] for lane in link["qkd_pools"]]
        if all(level >= QKD_POOL_HIGH for level in levels):
            return
        assert time.monotonic() < deadline, f"QKD lanes {gateway_id}-{neighbour} stayed at {levels}"
        await asyncio.sleep(0.2)


def lease_holder(testbed: ProcessTestbed, gateway_id: str, lease: str) -> tuple[ManagedProcess, ManagedProcess]:
    """(holder, other): the replica of a two-replica gateway that logged taking ``lease``, and the other."""
    replicas = testbed.replicas(gateway_id)
    holders = [r for r in replicas if f"took lease {lease}" in r.stderr_text()]
    assert len(holders) == 1, f"{gateway_id}: lease {lease!r} taken by {[r.name for r in holders]}"
    return holders[0], next(r for r in replicas if r is not holders[0])
