"""Assemble and run one gateway: Redis pools, QKD fillers, the relay engine and its three listeners.

Listeners: northbound ETSI 014 for local SAEs (mTLS), ETSI 020 for other KMSs (mTLS, TLS 1.3), and gRPC
for neighbour gateways (mTLS). Background tasks: a QKD filler per link this gateway is master of, the
pre-relay filler, 020 ack retries and encapsulation-key rotation; the first three run under leases in
Redis, so with several replicas of the gateway each runs on one replica at a time. Everything is built
from a :class:`GatewayPlan` and the topology's key directory; nothing global, so tests run several gateways
in one process too.

Every resource is entered into one :class:`contextlib.AsyncExitStack` as it is acquired, so a failed
start-up releases exactly what was acquired, and :meth:`RunningGateway.stop` releases everything in the
reverse order: background tasks, listeners, gRPC server, pending voids, then clients and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from aiohttp import web

from relay.aio import repeat_until_cancelled
from relay.crypto import (
    Clock,
    QkdUse,
    RedisReplayGuard,
    StorageCipher,
    load_identity,
    load_kem_provider,
    load_or_create_storage_key,
    load_trust_store,
    system_clock_ms,
)
from relay.domain import gateway_key_prefix
from relay.etsi014.client import Etsi014Client
from relay.etsi014.server import create_app as create_etsi014_app
from relay.etsi020.client import Etsi020Client
from relay.etsi020.models import AckContainer
from relay.etsi020.server import callback_peer
from relay.etsi020.server import create_app as create_etsi020_app
from relay.gateway.ack_delivery import AckDelivery, AckRetry
from relay.gateway.admin import ADMIN_HOST, GatewayStatus, create_admin_app
from relay.gateway.config import GatewayPlan, GatewaySettings, LinkPolicy
from relay.gateway.demand import BUCKETS as DEMAND_BUCKETS
from relay.gateway.demand import DemandTracker, pinned_pairs
from relay.gateway.fair_share import FairShares
from relay.gateway.foreign_border import ForeignBorder
from relay.gateway.forwarding import HopForwarder
from relay.gateway.grpc_health import GatewayHealth
from relay.gateway.grpc_services import add_services
from relay.gateway.grpc_tls import gateway_server, server_credentials
from relay.gateway.handover import AckSignal, Handover
from relay.gateway.hop_protection import HopCrypto, HopProtection, QkdLanes
from relay.gateway.hop_transport import GrpcHopTransport
from relay.gateway.interkms import InterKmsBridge
from relay.gateway.lane_levels import LaneBoard, LaneLookout
from relay.gateway.link_health import LinkHealth
from relay.gateway.liveness import NeighbourLiveness
from relay.gateway.metrics import GatewayMetrics
from relay.gateway.northbound import NorthboundBackend
from relay.gateway.peers import Peer
from relay.gateway.prerelay import Prerelay
from relay.gateway.qkd_admission import QkdAdmission
from relay.gateway.qkd_announce import AnnouncementReceiver
from relay.gateway.qkd_filler import QkdFiller
from relay.gateway.relay_engine import RelayEngine
from relay.gateway.routing import NoRoute, Router, shortest_route
from relay.gateway.shared_keyring import SharedKeyRing
from relay.gateway.status_view import GatewayView
from relay.gateway.storage import check_durability, redis_config
from relay.gateway.transfers import TransferLog
from relay.gateway.voiding import Voiding
from relay.http_server import RunningSite, start_site
from relay.pki.layout import KeyDirectory
from relay.pki.tls import ExpectedPeer
from relay.pool import (
    HandoverLedger,
    Keyspace,
    PoolError,
    QkdPool,
    RedisBackend,
    RelayedKeyStore,
    Role,
    TokenBuckets,
    link_pools,
)
from relay.pool.demand import DemandLog
from relay.pool.ek_store import EncapsulationKeyStore
from relay.pool.leases import TTL_MS, Lease, LeaseMetrics, run_while_leased
from relay.pool.replicas import ReplicaInstance, ReplicaLiveness
from relay.pool.retries import RetryQueue

log = logging.getLogger(__name__)

GRPC_GRACE_S = 1.0
HEALTH_INTERVAL_S = 1.0  # how often the gRPC health status is re-checked against Redis


@dataclass
class RunningGateway:
    plan: GatewayPlan
    engine: RelayEngine
    peers: Mapping[str, Peer]
    qkd_lanes: QkdLanes
    store: RelayedKeyStore
    interkms: InterKmsBridge
    voiding: Voiding
    handover: Handover
    fillers: list[QkdFiller]
    sites: dict[str, RunningSite]
    grpc_port: int
    metrics: GatewayMetrics
    health: GatewayHealth
    measure_lanes: Callable[[], Awaitable[None]]  # our lane levels into the board now (else each lane_refresh_s)
    resources: contextlib.AsyncExitStack

    async def stop(self) -> None:
        await self.resources.aclose()


@dataclass
class _QkdSupply:
    lanes: dict[str, Mapping[Role, QkdPool]]  # by neighbour ID
    fillers: list[QkdFiller]  # links this gateway is master of
    receivers: dict[str, AnnouncementReceiver]  # by QKD link ID, links this gateway is slave of


async def start_gateway(
    plan: GatewayPlan,
    settings: GatewaySettings,
    keys: KeyDirectory,
    *,
    clock: Clock = system_clock_ms,
    kem_provider: str = "cryptography",
) -> RunningGateway:
    async with contextlib.AsyncExitStack() as stack:
        backend = RedisBackend.connect(redis_config(plan, keys))
        stack.push_async_callback(_quietly(backend.close))
        cipher = StorageCipher(load_or_create_storage_key(keys.root / "storage" / f"{plan.id}.key"))
        keyspace = Keyspace(prefix=gateway_key_prefix(plan.id))
        identity = load_identity(plan.id, keys.identities)
        trust = load_trust_store(keys.identities)
        kem = load_kem_provider(kem_provider)
        instance = ReplicaInstance.new()  # this run of this replica; its leases' holder token too
        liveness = ReplicaLiveness(backend, keyspace.prefix, instance)
        stack.push_async_callback(_quietly(liveness.retire))  # after the gRPC server stopped, before Redis
        keyring = SharedKeyRing(identity, EncapsulationKeyStore(backend, cipher, keyspace.prefix), kem=kem, clock=clock)
        replay = RedisReplayGuard(backend.command, keyspace.prefix)
        crypto = HopCrypto(identity, keyring, trust, kem, replay, clock, round(settings.hop_window_s * 1000))
        store = RelayedKeyStore(backend, cipher, keyspace, settings.relayed_store)

        peers = {
            neighbour_id: Peer(nb, keys, plan.id, trust, clock, settings.keepalive)
            for neighbour_id, nb in plan.neighbours.items()
        }
        for peer in peers.values():
            stack.push_async_callback(_quietly(peer.close))
        supply = _qkd_supply(plan, settings, keys, peers, backend, cipher, keyspace, stack)

        metrics = GatewayMetrics(plan.id)  # the relay's observer
        metrics.certificates = (keys.certificate(plan.id), keys.certificate("ca"))
        await check_durability(backend, metrics, plan.id)
        own_020_url = f"https://{plan.gateway.host}:{plan.gateway.etsi020_port}"  # where peers reach us
        ledger = HandoverLedger(backend, keyspace, ttl_s=settings.relayed_store.waiting_ttl_s)  # the keys' lifetime
        ack_signal = AckSignal()
        foreign_clients = {
            domain.id: Etsi020Client(
                domain.etsi020_url,
                keys.client_context(
                    plan.id, minimum=ssl.TLSVersion.TLSv1_3, peer=ExpectedPeer(("kme",), domain.identity)
                ),  # pinned: the foreign KMS's 020 certificate must name its identity
            )
            for domain in plan.bordered_domains
        }
        for client in foreign_clients.values():
            stack.push_async_callback(_quietly(client.close))
        handover = Handover(ledger, ack_signal, own_url=own_020_url)
        relay = _relay(
            plan,
            settings,
            crypto,
            peers,
            supply.lanes,
            store,
            backend,
            keyspace,
            metrics,
            handover,
            foreign_clients,
            replica=liveness,
        )
        stack.push_async_callback(relay.voiding.close)
        stack.push_async_callback(relay.forwarder.close)
        stack.push_async_callback(relay.health.liveness.close)
        if relay.foreign is not None:
            stack.push_async_callback(relay.foreign.close)
        engine, voiding = relay.engine, relay.voiding
        demand_log = DemandLog(backend, keyspace, settings.prerelay_demand.window_s / DEMAND_BUCKETS, DEMAND_BUCKETS)
        holder = f"{plan.replica_name}#{instance.token}"  # leases and ack claims: which replica, which run of it
        leases = _Leases(backend, holder, metrics.leases)
        prerelay = _prerelay(plan, settings, engine, voiding, store, demand_log, leases.prerelay(keyspace))
        view = GatewayView(
            plan,
            relay.lanes,
            relay.health,
            store,
            metrics.counts,
            supply.fillers,
            prerelay,
            backend,
            qkd_key_bits=settings.qkd_pool.key_size_bits,
        )
        metrics.attach(view)

        server = gateway_server(settings.keepalive.server_options())
        voids = relay.foreign or voiding  # the border carries voids for foreign SAEs on over 020
        grpc_health = add_services(
            server, plan, engine, voids, supply.receivers, keyring, relay.board, relay.measure_lanes
        )
        ping_redis = partial(backend.command, "PING")
        await grpc_health.check_once(ping_redis)
        await _load_shared_state(plan.id, liveness, keyring)
        bridge = InterKmsBridge(
            plan,
            engine,
            relay.router,
            voiding,
            backend=backend,
            prefix=keyspace.prefix,
            ledger=ledger,
            acks=ack_signal,
        )
        callback_client = partial(_callback_client, keys, plan.id)
        acks = AckDelivery(
            partial(_post_acks, callback_client),
            voiding,
            callback_client,
            AckRetry(settings.ack_retry_s, settings.ack_retry_first_s),
            metrics.ack_delivery,
            # an entry nobody settled is kept as long as the keys it names could still be delivered
            RetryQueue(backend, keyspace.ack_retries(), kept_after_deadline_s=settings.relayed_store.waiting_ttl_s),
            holder,
        )
        stack.push_async_callback(server.stop, GRPC_GRACE_S)
        own_grpc_port = plan.gateway.replica_grpc_port(plan.replica)  # each replica has its own gRPC address
        grpc_port = server.add_secure_port(f"{settings.listen_host}:{own_grpc_port}", server_credentials(keys, plan.id))
        if grpc_port == 0:
            raise OSError(f"cannot listen for gRPC on {settings.listen_host}:{own_grpc_port}")
        await server.start()

        demand = prerelay.demand if prerelay is not None else None
        northbound = NorthboundBackend(plan, engine, store, settings.key_size_bits, demand)
        apps = {
            "etsi014": metrics.requests.instrument(
                create_etsi014_app(northbound, body_timeout_s=settings.listener.idle_timeout_s), "etsi014"
            ),
            "etsi020": metrics.requests.instrument(create_etsi020_app(bridge, acks.send), "etsi020"),
        }
        if plan.gateway.admin_port is not None:
            apps["admin"] = create_admin_app(GatewayStatus(view), ping_redis, metrics)
        sites = await _listen(stack, plan, settings, keys, apps)

        tasks = [
            leases.run(keyspace.qkd_filler_lease(filler.link_id), f"qkd-filler {filler.link_id}", filler.run)
            for filler in supply.fillers
        ]
        if prerelay is not None:
            tasks.append(asyncio.create_task(prerelay.run(), name="prerelay"))  # a lease per SAE pair, inside
        tasks.append(leases.run(keyspace.ack_retries_lease(), "020-ack-retries", acks.run_retries))
        tasks.append(asyncio.create_task(_maintain_forever(keyring), name="ek-rotation"))
        tasks.append(asyncio.create_task(liveness.run(), name="replica-liveness"))
        measure = relay.measure_lanes
        tasks.append(asyncio.create_task(repeat_until_cancelled(measure, settings.lane_refresh_s), name="lane-levels"))
        tasks.append(asyncio.create_task(grpc_health.run(ping_redis, HEALTH_INTERVAL_S), name="grpc-health"))
        stack.push_async_callback(_cancel, tasks)
        log.info(
            "gateway %s: ETSI 014 on %s, ETSI 020 on %s, gRPC on %s:%d, Redis %s",
            plan.replica_name,
            sites["etsi014"].url,
            sites["etsi020"].url,
            settings.listen_host,
            grpc_port,
            backend.where,
            extra={"gateway": plan.id},
        )
        return RunningGateway(
            plan=plan,
            engine=engine,
            peers=peers,
            qkd_lanes=relay.lanes,
            store=store,
            interkms=bridge,
            voiding=voiding,
            handover=handover,
            fillers=supply.fillers,
            sites=sites,
            grpc_port=grpc_port,
            metrics=metrics,
            health=grpc_health,
            measure_lanes=measure,
            resources=stack.pop_all(),
        )
    raise AssertionError("unreachable: the block returns or raises")


@dataclass(frozen=True)
class _Leases:
    """This replica's leases: every one held by ``holder`` (its name and run token), each counted in the
    gateway's metrics."""

    backend: RedisBackend
    holder: str
    metrics: LeaseMetrics

    def lease(self, name: str, label: str) -> Lease:
        return Lease(self.backend, name, self.holder, TTL_MS, label=label, metrics=self.metrics)

    def run(self, name: str, label: str, work: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """A task running ``work`` while this replica holds lease ``name``."""
        return asyncio.create_task(run_while_leased(self.lease(name, label), work), name=label)

    def prerelay(self, keyspace: Keyspace) -> Callable[[str, str], Lease]:
        def pair_lease(master: str, slave: str) -> Lease:
            return self.lease(keyspace.prerelay_lease(master, slave), f"prerelay {master} -> {slave}")

        return pair_lease


@dataclass
class _Relay:
    health: LinkHealth
    board: LaneBoard
    measure_lanes: Callable[[], Awaitable[None]]
    router: Router
    lanes: QkdLanes
    voiding: Voiding
    engine: RelayEngine
    forwarder: HopForwarder
    foreign: ForeignBorder | None  # when this gateway borders a foreign KMS domain


def _relay(
    plan: GatewayPlan,
    settings: GatewaySettings,
    crypto: HopCrypto,
    peers: Mapping[str, Peer],
    lanes_by_neighbour: Mapping[str, Mapping[Role, QkdPool]],
    store: RelayedKeyStore,
    backend: RedisBackend,
    keyspace: Keyspace,
    observer: GatewayMetrics,
    handover: Handover,
    foreign_clients: Mapping[str, Etsi020Client],
    *,
    replica: ReplicaLiveness,
) -> _Relay:
    """The relay's components, each handed exactly the collaborators it uses."""
    liveness = NeighbourLiveness(
        {neighbour_id: partial(peer.probe, settings.liveness.probe_timeout_s) for neighbour_id, peer in peers.items()},
        settings.liveness,
    )
    health = LinkHealth(
        plan.topology.links,
        {neighbour_id: neighbour.link for neighbour_id, neighbour in plan.neighbours.items()},
        liveness,
        link_down_s=settings.link_down_s,
    )
    board = LaneBoard(plan.id, plan.topology.links, fresh_s=settings.lane_fresh_s)
    lanes = QkdLanes(plan.neighbours, lanes_by_neighbour)
    transport = GrpcHopTransport(plan.id, peers, health, observer, board, hop_attempts=settings.hop_attempts)
    measure = partial(_measure_lanes, lanes, board, health)
    lookout = LaneLookout(plan.id, measure, transport.ask_lanes)
    router = Router(plan, health, board, lookout)
    voiding = Voiding(plan, router, store, transport, observer, crypto, hop_timeout_s=settings.hop_timeout_s)
    protection = HopProtection(plan.id, plan.neighbours, lanes, crypto, observer, board, qkd_wait_s=settings.qkd_wait_s)
    forwarder = HopForwarder(
        protection,
        transport,
        observer,
        plan.neighbours,
        frames_in_flight=settings.frames_in_flight,
        admissions=_qkd_admissions(plan, board, settings.qkd_pool.key_size_bits),
        waiting_links=frozenset(
            frozenset(link.gateways) for link in plan.topology.links if link.policy == "require-qkd"
        ),
    )
    transfers = TransferLog(
        backend, keyspace.prefix, gateway_id=plan.id, liveness=replica, hop_window_s=settings.hop_window_s
    )
    foreign = None
    if foreign_clients:
        foreign = ForeignBorder(
            handover,
            foreign_clients,
            plan.foreign_saes,
            voiding,
            crypto,
            plan.sae_homes,
            own_id=plan.id,
            neighbours=plan.neighbours,
            deadline_s=settings.foreign_ack_deadline_s,
            prefer_synchronous=settings.foreign_synchronous,
            outcomes=observer.foreign_handovers,
        )
    rates = {qkd.id: qkd.rate_bps for qkd in plan.topology.qkd_links}
    buckets = TokenBuckets(backend, keyspace)
    over_qkd = {link.qkd_link: link for link in plan.topology.links if link.qkd_link}
    shares = FairShares(
        plan.topology.fair_share, buckets, rates, over_qkd, qkd_key_bits=settings.qkd_pool.key_size_bits
    )
    engine = RelayEngine(plan, settings, forwarder, router, store, transfers, voiding, observer, foreign, shares)
    return _Relay(health, board, measure, router, lanes, voiding, engine, forwarder, foreign)


def _qkd_supply(
    plan: GatewayPlan,
    settings: GatewaySettings,
    keys: KeyDirectory,
    peers: Mapping[str, Peer],
    backend: RedisBackend,
    cipher: StorageCipher,
    keyspace: Keyspace,
    stack: contextlib.AsyncExitStack,
) -> _QkdSupply:
    """Each QKD link's lanes, and its filler (master end) or announcement receiver (slave end)."""
    supply = _QkdSupply({}, [], {})
    for neighbour_id, neighbour in plan.neighbours.items():
        if neighbour.qkd is None:
            continue
        qkd = neighbour.qkd
        pools = supply.lanes[neighbour_id] = link_pools(backend, cipher, keyspace, qkd.link_id, settings.qkd_pool)
        kme = Etsi014Client(qkd.kme_url, keys.client_context(plan.id, peer=qkd.kme))
        stack.push_async_callback(_quietly(kme.close))
        if qkd.role is Role.MASTER:
            peer = peers[neighbour_id]
            supply.fillers.append(
                QkdFiller(
                    qkd.link_id,
                    qkd.peer_sae_id,
                    kme,
                    pools,
                    peer,
                    settings.qkd_filler,
                    peer_reachable=peer.is_connected,
                )
            )
        else:
            supply.receivers[qkd.link_id] = AnnouncementReceiver(qkd.link_id, qkd.peer_sae_id, kme, pools)
    return supply


def _qkd_admissions(plan: GatewayPlan, board: LaneBoard, qkd_key_bits: int) -> dict[str, QkdAdmission]:
    """Admission onto each require-qkd link, by neighbour ID, at the rate its topology entry states."""
    rates = {qkd.id: qkd.rate_bps for qkd in plan.topology.qkd_links}
    return {
        neighbour_id: QkdAdmission(
            neighbour.qkd.link_id,
            rates[neighbour.qkd.link_id] / qkd_key_bits,
            neighbour.link.frame_keys,
            padded=neighbour.qkd_use is QkdUse.OTP,
            level=partial(board.level, plan.id, neighbour_id),
            replicas=plan.gateway.replicas,
        )
        for neighbour_id, neighbour in plan.neighbours.items()
        if neighbour.policy is LinkPolicy.REQUIRE_QKD and neighbour.qkd is not None
    }


async def _measure_lanes(lanes: QkdLanes, board: LaneBoard, health: LinkHealth) -> None:
    """Our outbound lane levels into the board, which hop answers report upstream; with Redis away the
    entries simply age out (the hops fail on storage then anyway)."""
    try:
        levels = await lanes.outbound_levels()
    except PoolError as exc:
        log.debug("lane levels not measured: %s", exc)
        return
    for neighbour_id, level in levels.items():
        board.measured(neighbour_id, level if health.reachable(neighbour_id) else None)


def _prerelay(
    plan: GatewayPlan,
    settings: GatewaySettings,
    engine: RelayEngine,
    voiding: Voiding,
    store: RelayedKeyStore,
    demand_log: DemandLog,
    pair_lease: Callable[[str, str], Lease],
) -> Prerelay | None:
    if not settings.prerelay:
        return None
    demand = DemandTracker(
        plan.id,
        plan.sae_homes,
        pinned_pairs(plan.topology.saes, plan.id),
        partial(_route_links, plan),
        demand_log,
        settings.relayed_store.ready_watermarks,
        settings.prerelay_demand,
        kept_for_s=settings.relayed_store.ready_ttl_s,
    )
    return Prerelay(
        engine,
        voiding,
        store,
        demand,
        plan.sae_homes,
        pair_lease,
        key_size_bytes=settings.key_size_bits // 8,
        batch=settings.prerelay_batch,
        interval_s=settings.prerelay_interval_s,
    )


def _route_links(plan: GatewayPlan, destination: str) -> tuple[str, ...]:
    """The links (``GW1-GW2``) of the cheapest route to ``destination``: what its pre-relayed keys spent."""
    try:
        route = shortest_route(plan.topology.links, plan.id, destination)
    except NoRoute:  # no key reaches it anyway; pre-relay's failures pace it
        return ()
    return tuple("-".join(sorted(link.gateways)) for link in route.links)


async def _listen(
    stack: contextlib.AsyncExitStack,
    plan: GatewayPlan,
    settings: GatewaySettings,
    keys: KeyDirectory,
    apps: Mapping[str, web.Application],
) -> dict[str, RunningSite]:
    """The HTTP listeners: ETSI 014 (mTLS), ETSI 020 (mTLS, TLS 1.3), and the loopback admin one if configured.

    014 and 020 are one port for all the gateway's replicas (SO_REUSEPORT when it has several), so its SAEs
    and peer KMSs keep one URL; the admin listener is this replica's own.
    """
    where: dict[str, tuple[str, int, ssl.SSLContext | None]] = {
        "etsi014": (settings.listen_host, plan.gateway.etsi014_port, keys.server_context(plan.id)),
        "etsi020": (
            settings.listen_host,
            plan.gateway.etsi020_port,
            keys.server_context(plan.id, minimum=ssl.TLSVersion.TLSv1_3),
        ),
    }
    admin_port = plan.gateway.replica_admin_port(plan.replica)
    if admin_port is not None:
        where["admin"] = (ADMIN_HOST, admin_port, None)
    shared = plan.gateway.replicas > 1
    sites: dict[str, RunningSite] = {}
    for name, (host, port, context) in where.items():
        reuse_port = shared and name != "admin"
        sites[name] = await start_site(apps[name], host, port, context, settings.listener, reuse_port=reuse_port)
        stack.push_async_callback(sites[name].stop)
    return sites


def _callback_client(keys: KeyDirectory, gateway_id: str, caller: str, base_url: str) -> Etsi020Client:
    """A 020 client to ``base_url`` that accepts only ``caller``'s server: the KMS that called us."""
    context = keys.client_context(gateway_id, minimum=ssl.TLSVersion.TLSv1_3, peer=callback_peer(caller))
    return Etsi020Client(base_url, context)


async def _post_acks(
    client_for: Callable[[str, str], Etsi020Client], caller: str, callback_url: str, acks: Sequence[AckContainer]
) -> None:
    """One connection per ack request: acks are rare (one per handed-over batch), and each goes to its caller."""
    async with client_for(caller, callback_url) as client:
        await client.post_acks(callback_url, acks)


def _quietly(close: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """A client's close at shutdown: a failure to close one must not keep the others open."""

    async def close_quietly() -> None:
        with contextlib.suppress(Exception):
            await close()

    return close_quietly


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _load_shared_state(gateway_id: str, liveness: ReplicaLiveness, keyring: SharedKeyRing) -> None:
    """Before any frame: say we are alive (other replicas must not take our first claims for dead) and load
    the keyring. With Redis away the gateway starts anyway, like its pools, and the background tasks retry."""
    try:
        await liveness.beat()
        await keyring.start()
    except PoolError as exc:
        log.warning("gateway %s: shared state not loaded yet: %s", gateway_id, exc, extra={"gateway": gateway_id})


async def _maintain_forever(keyring: SharedKeyRing) -> None:
    """Refresh the shared ring and rotate when due (whichever replica gets there first); a Redis outage
    skips a round, the copy in hand keeps serving until its keys expire."""

    async def maintain() -> None:
        try:
            await keyring.maintain()
        except PoolError as exc:
            log.warning("encapsulation keyring not refreshed: %s", exc, extra={"gateway": keyring.gateway_id})

    await repeat_until_cancelled(maintain, keyring.refresh_s)
