"""Topologies the load test runs on, with every listening port replaced by a currently free one.

``three-region`` is the embedded default (QKD on GW1-GW2 and GW2-GW3, pqc-only GW1-GW3). It has no
3-hop path, and its QKD links (2 to 3 kbit/s, about 10 keys/s) cap every on-demand relay over them, so
the load test also generates two chains of gateways joined by ``pqc-only`` links, which measure relay
costs without QKD scarcity:

- ``loadtest-chain``: GW1 - GW2 - GW3 - GW4, one SAE per gateway, for 1, 2 and 3 hops;
- ``loadtest-pool``: GW1 - GW2 with eight SAEs at GW1, for pool-served requests. Pre-relay fills every
  (local SAE, remote SAE) pair's ready pool, a bounded number of keys per pair and round, so eight
  source pairs fill eight times faster than one; the load test's workers take the eight identities in
  turn.

Each is pinned whole (:func:`every_pair_pinned`): a gateway keeps ready pools only for SAE pairs that asked
recently or that the topology pins (``prerelay_to``), and a pool run measures requests served from pools
filled before it starts, as a deployment pins the pairs that must be served at once.

The topology format requires a vendor KMS, so each chain has one with a single KME and no QKD link; it
idles.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from relay.testbed.region_redis import cluster_port_offsets

THREE_REGION = "three-region"
CHAIN = "loadtest-chain"
POOL = "loadtest-pool"
POOL_SOURCES = 8
UNMETERED_SHARES: dict[str, float] = {"keys_burst": 1e9, "keys_per_s": 1e9, "qkd_burst_bits": 1e12, "qkd_share": 1.0}
"""``fair_share`` lifted: a load test measures the relay's capacity, not the SAE pairs' fair shares (which
would cap one pair at a share of a link's rate even while the simulated vendor holds thousands of keys)."""


def three_region_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(
        resources.files("relay.topologies").joinpath(f"{THREE_REGION}.yaml").read_text()
    )
    return document


def chain_document(name: str = CHAIN, gateways: int = 4, sources: int = 1) -> dict[str, Any]:
    """GW1 - GW2 - ... - GWn over pqc-only links; ``sources`` SAEs at GW1 (SAE-C1-A, -B, ...) and one,
    SAE-Ci-A, at every other GWi. Ports are placeholders, to be replaced by :func:`with_free_ports`."""
    regions = []
    for index in range(1, gateways + 1):
        base = 29000 + index * 10
        count = sources if index == 1 else 1
        regions.append(
            {
                "id": f"chain{index}",
                "redis_port": base,
                "gateways": [
                    {
                        "id": f"GW{index}",
                        "etsi014_port": base + 1,
                        "etsi020_port": base + 2,
                        "grpc_port": base + 3,
                        "admin_port": base + 4,
                    }
                ],
                "saes": [{"id": f"SAE-C{index}-{chr(ord('A') + n)}", "gateway": f"GW{index}"} for n in range(count)],
            }
        )
    return {
        "name": name,
        "kms": [
            {"id": "KMS-CHAIN", "region": "chain1", "admin_port": 29001, "kmes": [{"id": "KME-CHAIN-A", "port": 29002}]}
        ],
        "regions": regions,
        "links": [{"gateways": [f"GW{i}", f"GW{i + 1}"], "policy": "pqc-only"} for i in range(1, gateways)],
    }


def document_for(name: str) -> dict[str, Any]:
    """The named topology as the load test runs it: with :data:`UNMETERED_SHARES`."""
    if name == THREE_REGION:
        document = three_region_document()
    elif name == CHAIN:
        document = chain_document(CHAIN, gateways=4)
    elif name == POOL:
        document = chain_document(POOL, gateways=2, sources=POOL_SOURCES)
    else:
        raise ValueError(f"no load-test topology named {name!r}")
    return {**every_pair_pinned(document), "fair_share": dict(UNMETERED_SHARES)}


def every_pair_pinned(document: dict[str, Any]) -> dict[str, Any]:
    """Every SAE pins its ready pool with every SAE at another gateway (the document is modified)."""
    saes = [sae for region in document["regions"] for sae in region.get("saes", [])]
    for sae in saes:
        sae["prerelay_to"] = [other["id"] for other in saes if other["gateway"] != sae["gateway"]]
    return document


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; all sockets are held until every port is chosen, so none repeats."""
    return free_port_blocks([(0,)] * count)


def free_port_blocks(blocks: Sequence[Sequence[int]]) -> list[int]:
    """Per block of offsets a base port such that base + each offset is free now; every socket is held
    until all are chosen, so no port serves two blocks."""
    held: list[socket.socket] = []
    bases = []
    try:
        for offsets in blocks:
            while True:
                sock = socket.socket()
                held.append(sock)  # also a base that does not fit: the kernel must not hand it out again
                sock.bind(("127.0.0.1", 0))
                base = int(sock.getsockname()[1])
                if _bind_all(base, [offset for offset in offsets if offset], held):
                    bases.append(base)
                    break
        return bases
    finally:
        for sock in held:
            sock.close()


def _bind_all(base: int, offsets: Sequence[int], held: list[socket.socket]) -> bool:
    for offset in offsets:
        sock = socket.socket()
        held.append(sock)
        try:
            sock.bind(("127.0.0.1", base + offset))
        except (OSError, OverflowError):
            return False
    return True


def with_free_ports(document: dict[str, Any], *, redis_cluster: bool = False) -> dict[str, Any]:
    """The same topology with every listening port replaced by a free one (the document is modified).

    A gateway with ``replicas`` gets blocks of consecutive free ports for its gRPC and admin listeners (one
    per replica); with ``redis_cluster``, every port a region's cluster derives from ``redis_port`` is free.
    """
    fields: list[tuple[dict[str, Any], str, Sequence[int]]] = [(kms, "admin_port", (0,)) for kms in document["kms"]]
    fields += [(kme, "port", (0,)) for kms in document["kms"] for kme in kms["kmes"]]
    redis_offsets = cluster_port_offsets() if redis_cluster else (0,)
    fields += [(region, "redis_port", redis_offsets) for region in document["regions"]]
    for region in document["regions"]:
        for gateway in region["gateways"]:
            replicas = tuple(range(gateway.get("replicas", 1)))
            fields += [(gateway, name, (0,)) for name in ("etsi014_port", "etsi020_port")]
            fields += [(gateway, name, replicas) for name in ("grpc_port", "admin_port") if name in gateway]
    fields += [
        (foreign, name, (0,))
        for foreign in document.get("foreign_kms", ())
        for name in ("etsi020_port", "etsi014_port", "admin_port")
        if name in foreign
    ]
    for (item, name, _), port in zip(fields, free_port_blocks([offsets for *_, offsets in fields]), strict=True):
        item[name] = port
    return document


def write_topology(document: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
