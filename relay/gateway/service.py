"""Assemble and run one gateway: Redis pools, QKD fillers, the relay engine and its three listeners.

Listeners: northbound ETSI 014 for local SAEs (mTLS), ETSI 020 for other KMSs (mTLS, TLS 1.3), and gRPC
for neighbour gateways (mTLS). Background tasks: a QKD filler per link this gateway is master of, the
pre-relay filler, and encapsulation-key rotation. Everything is built from a :class:`GatewayPlan` and
the topology's key directory; nothing global, so tests run several gateways in one process too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import grpc

from relay.aio import repeat_until_cancelled
from relay.crypto import (
    Clock,
    KeyRing,
    RedisReplayGuard,
    StorageCipher,
    load_identity,
    load_kem_provider,
    load_or_create_storage_key,
    load_trust_store,
    system_clock_ms,
)
from relay.etsi014.client import Etsi014Client
from relay.etsi014.server import create_app as create_etsi014_app
from relay.etsi020.client import Etsi020Client
from relay.etsi020.server import create_app as create_etsi020_app
from relay.gateway.admin import ADMIN_HOST, GatewayStatus, create_admin_app
from relay.gateway.config import GatewayPlan, GatewaySettings
from relay.gateway.grpc_services import add_services
from relay.gateway.grpc_tls import server_credentials
from relay.gateway.interkms import InterKmsBridge
from relay.gateway.northbound import NorthboundBackend
from relay.gateway.peers import Peer
from relay.gateway.prerelay import Prerelay
from relay.gateway.relay_engine import HopCrypto, RelayEngine
from relay.gateway.transfers import TransferLog
from relay.http_server import RunningSite, start_site
from relay.observability.gateway import GatewayMetrics, GatewaySources
from relay.observability.health import GatewayHealth
from relay.pki.layout import KeyDirectory
from relay.pool import (
    AnnouncementReceiver,
    FillerSettings,
    Keyspace,
    QkdFiller,
    RedisBackend,
    RedisConfig,
    RelayedKeyStore,
    Role,
    link_pools,
)

log = logging.getLogger(__name__)

GRPC_GRACE_S = 1.0
HEALTH_INTERVAL_S = 1.0  # how often the gRPC health status is re-checked against Redis


@dataclass
class RunningGateway:
    plan: GatewayPlan
    engine: RelayEngine
    store: RelayedKeyStore
    interkms: InterKmsBridge
    fillers: list[QkdFiller]
    prerelay: Prerelay | None
    sites: dict[str, RunningSite]
    grpc_port: int
    metrics: GatewayMetrics
    health: GatewayHealth
    _grpc_server: grpc.aio.Server
    _tasks: list[asyncio.Task[None]]
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for site in self.sites.values():
            await site.stop()
        await self._grpc_server.stop(GRPC_GRACE_S)
        await self.engine.close()
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                await close()


async def start_gateway(
    plan: GatewayPlan,
    settings: GatewaySettings,
    keys: KeyDirectory,
    *,
    clock: Clock = system_clock_ms,
    kem_provider: str = "cryptography",
) -> RunningGateway:
    closers: list[Callable[[], Awaitable[None]]] = []
    backend = RedisBackend.connect(RedisConfig(url=plan.redis_url))
    closers.append(backend.close)
    cipher = StorageCipher(load_or_create_storage_key(keys.root / "storage" / f"{plan.id}.key"))
    keyspace = Keyspace(prefix=f"qkdr.{plan.id}")
    identity = load_identity(plan.id, keys.identities)
    trust = load_trust_store(keys.identities)
    kem = load_kem_provider(kem_provider)
    keyring = KeyRing(identity, kem=kem, clock=clock)
    crypto = HopCrypto(identity, keyring, trust, kem, RedisReplayGuard(backend.command, keyspace.prefix), clock)
    store = RelayedKeyStore(backend, cipher, keyspace, settings.relayed_store)

    peers = {
        neighbour_id: Peer(neighbour, keys, plan.id, trust, clock, link_down_s=settings.link_down_s)
        for neighbour_id, neighbour in plan.neighbours.items()
    }
    closers.extend(peer.close for peer in peers.values())
    lanes = {}
    fillers: list[QkdFiller] = []
    receivers: dict[str, AnnouncementReceiver] = {}
    for neighbour_id, neighbour in plan.neighbours.items():
        if neighbour.qkd is None:
            continue
        qkd = neighbour.qkd
        pools = lanes[neighbour_id] = link_pools(backend, cipher, keyspace, qkd.link_id, settings.qkd_pool)
        kme = Etsi014Client(qkd.kme_url, keys.client_context(plan.id))
        closers.append(kme.close)
        if qkd.role is Role.MASTER:
            peer = peers[neighbour_id]
            fillers.append(
                QkdFiller(
                    qkd.link_id, qkd.peer_sae_id, kme, pools, peer, FillerSettings(), peer_reachable=peer.is_connected
                )
            )
        else:
            receivers[qkd.link_id] = AnnouncementReceiver(qkd.link_id, qkd.peer_sae_id, kme, pools)

    metrics = GatewayMetrics(plan.id)
    engine = RelayEngine(
        plan, settings, crypto, peers, lanes, store, TransferLog(backend, keyspace.prefix), observer=metrics
    )
    northbound = NorthboundBackend(plan, engine, store, settings.key_size_bits)
    prerelay = None
    if settings.prerelay:
        pairs = [(master, slave) for master in plan.local_saes for slave in plan.remote_saes]
        prerelay = Prerelay(
            engine,
            store,
            pairs,
            key_size_bytes=settings.key_size_bits // 8,
            batch=settings.prerelay_batch,
            interval_s=settings.prerelay_interval_s,
        )

    metrics.attach(
        GatewaySources(engine, store, fillers, prerelay, backend, qkd_key_bits=settings.qkd_pool.key_size_bits)
    )
    server = grpc.aio.server()
    health = add_services(server, engine, receivers, keyring)
    ping_redis = partial(backend.command, "PING")
    await health.check_once(ping_redis)
    sites: dict[str, RunningSite] = {}
    own_020_url = f"https://{plan.gateway.host}:{plan.gateway.etsi020_port}"  # where peers reach us
    ack_client = Etsi020Client(own_020_url, keys.client_context(plan.id, minimum=ssl.TLSVersion.TLSv1_3))
    closers.append(ack_client.close)
    bridge = InterKmsBridge(engine, own_020_url, backend, keyspace.prefix)
    try:
        grpc_port = server.add_secure_port(
            f"{settings.listen_host}:{plan.gateway.grpc_port}", server_credentials(keys, plan.id)
        )
        if grpc_port == 0:
            raise OSError(f"cannot listen for gRPC on {settings.listen_host}:{plan.gateway.grpc_port}")
        await server.start()
        sites["etsi014"] = await start_site(
            metrics.requests.instrument(create_etsi014_app(northbound), "etsi014"),
            settings.listen_host,
            plan.gateway.etsi014_port,
            keys.server_context(plan.id),
        )
        sites["etsi020"] = await start_site(
            metrics.requests.instrument(create_etsi020_app(bridge, ack_client.post_acks), "etsi020"),
            settings.listen_host,
            plan.gateway.etsi020_port,
            keys.server_context(plan.id, minimum=ssl.TLSVersion.TLSv1_3),
        )
        if plan.gateway.admin_port is not None:
            status = GatewayStatus(engine, store, fillers, prerelay, qkd_key_bits=settings.qkd_pool.key_size_bits)
            sites["admin"] = await start_site(
                create_admin_app(status, ping_redis, metrics), ADMIN_HOST, plan.gateway.admin_port, None
            )
    except BaseException:
        for site in sites.values():
            await site.stop()
        await server.stop(None)
        for close in reversed(closers):
            await close()
        raise

    tasks = [asyncio.create_task(filler.run(), name=f"qkd-filler-{filler.link_id}") for filler in fillers]
    if prerelay is not None:
        tasks.append(asyncio.create_task(prerelay.run(), name="prerelay"))
    tasks.append(asyncio.create_task(_rotate_forever(keyring), name="ek-rotation"))
    tasks.append(asyncio.create_task(health.run(ping_redis, HEALTH_INTERVAL_S), name="grpc-health"))
    log.info(
        "gateway %s: ETSI 014 on %s, ETSI 020 on %s, gRPC on %s:%d, Redis %s",
        plan.id,
        sites["etsi014"].url,
        sites["etsi020"].url,
        settings.listen_host,
        grpc_port,
        backend.where,
        extra={"gateway": plan.id},
    )
    return RunningGateway(
        plan, engine, store, bridge, fillers, prerelay, sites, grpc_port, metrics, health, server, tasks, closers
    )


async def _rotate_forever(keyring: KeyRing) -> None:
    """Rotate at half the key lifetime, so peers always hold an unexpired announcement."""
    await asyncio.sleep(keyring.lifetime_ms / 2000)
    await repeat_until_cancelled(_rotation_step(keyring), keyring.lifetime_ms / 2000)


def _rotation_step(keyring: KeyRing) -> Callable[[], Awaitable[None]]:
    async def rotate() -> None:
        keyring.rotate()

    return rotate
