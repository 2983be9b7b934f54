"""Hop-by-hop relay of end-to-end keys: originate, forward, store at the target gateway, void on failure.

The originating gateway draws the route; every gateway on it protects the key for the next hop with the
hybrid construction of ``relay.crypto`` and waits for that hop's confirmation, which the next gateway
sends only once the key is stored at the last gateway. So the answer to hop 0 is the end-to-end ack, and
the master SAE gets a key only after its slave's gateway holds it (the 020 rule). A failure anywhere
voids the key along the path; nothing is half-delivered.

Per link policy: ``qkd+pqc`` seals with a fresh QKD key from the link's pool and, when the pool is
empty, degrades that hop to ``pqc-only`` with a warning and a counted metric, the mode being signed into
the hop header; ``require-qkd`` never degrades and answers :class:`QkdExhausted` (503); ``pqc-only``
uses ML-KEM alone. Receivers accept exactly the modes their link policy allows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

from relay.crypto import (
    Clock,
    GatewayIdentity,
    HopMode,
    HopRoute,
    KemProvider,
    KeyRing,
    QkdKey,
    ReplayGuard,
    SealedHop,
    TrustStore,
    open_hop,
    seal_hop,
)
from relay.crypto.errors import ConfirmationFailed, MalformedMessage, TrustError
from relay.domain import MAX_SAE_ID_LENGTH, Key, check_key_id, new_key_id
from relay.gateway.config import GatewayPlan, GatewaySettings, LinkPolicy, Neighbour
from relay.gateway.errors import QkdExhausted, RelayFailed, TransferInProgress, TransferRefused
from relay.gateway.peers import TRANSPORT_FAILURES, Peer
from relay.gateway.routing import NoRoute, Route, shortest_route
from relay.gateway.transfers import TransferLog, TransferState
from relay.observability.hooks import RelayObserver
from relay.pool import PoolEmpty, PoolError, QkdPool, RelayedKeyStore, Role
from relay.proto.qkdrelay.v1 import relay_pb2 as pb

log = logging.getLogger(__name__)

DOWN_LINK_METADATA = "qkdr-down-link"  # trailing metadata naming a link a downstream gateway found cut
_ALLOWED_MODES = {
    LinkPolicy.QKD_PQC: (HopMode.QKD_PQC, HopMode.PQC_ONLY),
    LinkPolicy.REQUIRE_QKD: (HopMode.QKD_PQC,),
    LinkPolicy.PQC_ONLY: (HopMode.PQC_ONLY,),
}
_RETRY_PAUSE_S = 0.1


def new_key(size_bytes: int) -> Key:
    """A fresh end-to-end key and its key_ID (a random UUID, as 014 and 020 expect)."""
    return Key(new_key_id(), os.urandom(size_bytes))


@dataclass
class RelayMetrics:
    keys_relayed: int = 0  # end-to-end, originated here
    relay_failures: int = 0
    hops_sent: int = 0
    hops_received: int = 0
    hop_retries: int = 0
    qkd_fallbacks: int = 0  # qkd+pqc hops sealed pqc-only because the QKD pool was empty
    qkd_exhausted: int = 0  # require-qkd hops refused for want of QKD key
    keys_voided: int = 0


@dataclass(frozen=True)
class HopCrypto:
    """This gateway's keys and trust anchors, as hop sealing and opening need them."""

    identity: GatewayIdentity
    keyring: KeyRing
    trust: TrustStore
    kem: KemProvider
    replay: ReplayGuard
    clock: Clock


class RelayEngine:
    def __init__(
        self,
        plan: GatewayPlan,
        settings: GatewaySettings,
        crypto: HopCrypto,
        peers: Mapping[str, Peer],
        qkd_lanes: Mapping[str, Mapping[Role, QkdPool]],
        store: RelayedKeyStore,
        transfers: TransferLog,
        *,
        observer: RelayObserver | None = None,
    ) -> None:
        self.plan = plan
        self.metrics = RelayMetrics()
        self.observer = observer or RelayObserver()
        self._settings = settings
        self._crypto = crypto
        self.peers = peers
        self._lanes = qkd_lanes  # by neighbour ID
        self._store = store
        self._transfers = transfers
        self._remote_down: dict[tuple[str, str], float] = {}
        self._background: set[asyncio.Task[None]] = set()

    # ----- originating side -------------------------------------------------------------------------

    async def relay_new_keys(
        self,
        initiator: str,
        target: str,
        number: int,
        size_bytes: int,
        extension_json: str = "",
        *,
        no_degrade: bool = False,
    ) -> list[Key]:
        """``number`` fresh keys shared with ``target``, each relayed end to end; all of them or none.

        ``no_degrade`` forbids sealing qkd+pqc hops pqc-only when QKD key runs out (see the proto).
        """
        outcomes = await asyncio.gather(
            *(self._relay_fresh_key(initiator, target, size_bytes, extension_json, no_degrade) for _ in range(number)),
            return_exceptions=True,
        )
        keys = [outcome for outcome in outcomes if isinstance(outcome, Key)]
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            if keys:
                self.void_later(initiator, target, [key.key_id for key in keys])
            raise failures[0]
        return keys

    async def _relay_fresh_key(
        self, initiator: str, target: str, size_bytes: int, extension_json: str, no_degrade: bool
    ) -> Key:
        """Each attempt uses a new key and key_ID: the SAE never saw the failed one, which is voided."""
        for attempt in range(1, self._settings.relay_attempts + 1):
            key = new_key(size_bytes)
            try:
                await self.relay_key(initiator, target, key, extension_json, no_degrade=no_degrade)
                return key
            except RelayFailed as failure:
                if not failure.retryable or attempt == self._settings.relay_attempts:
                    raise
                log.info("relay of a key for %s -> %s failed (%s); retrying", initiator, target, failure)
        raise AssertionError("unreachable: the last attempt re-raises")

    async def relay_key(
        self, initiator: str, target: str, key: Key, extension_json: str = "", *, no_degrade: bool = False
    ) -> None:
        """Relay ``key`` to ``target``'s gateway and store it there; returns once it is stored."""
        target_gateway = self._home_of(target)
        if target_gateway == self.plan.id:
            await self._store_for_target(initiator, target, key)
            return
        route = self.route_to(target_gateway)
        transfer_id = uuid.uuid4().bytes
        started = time.perf_counter()
        try:
            await self._forward(
                transfer_id,
                route.gateways,
                0,
                initiator,
                target,
                key,
                extension_json,
                self._settings.hop_timeout_s,
                no_degrade,
            )
        except RelayFailed as exc:
            self.metrics.relay_failures += 1
            self.observer.relay_failed(type(exc).__name__)
            log.info("transfer %s failed: %s", transfer_id.hex(), exc.message, extra={"transfer_id": transfer_id.hex()})
            if not isinstance(exc, QkdExhausted):  # QkdExhausted: refused before the last hop, nothing stored
                self.void_later(initiator, target, [key.key_id], route.gateways)
            raise
        elapsed = time.perf_counter() - started
        self.metrics.keys_relayed += 1
        self.observer.relay_done(target_gateway, elapsed)
        log.debug(
            "transfer %s relayed over %s in %.1f ms",
            transfer_id.hex(),
            "-".join(route.gateways),
            elapsed * 1000,
            extra={"transfer_id": transfer_id.hex(), "route": "-".join(route.gateways), "key_id": key.key_id},
        )

    def route_to(self, target_gateway: str) -> Route:
        down = {peer.neighbour.link for peer in self.peers.values() if peer.is_down}
        now = time.monotonic()
        for link in self.plan.topology.links:
            if self._remote_down.get(link.gateways, 0.0) > now:
                down.add(link)
        try:
            return shortest_route(self.plan.topology.links, self.plan.id, target_gateway, down=frozenset(down))
        except NoRoute as exc:
            raise RelayFailed(f"no working route from {self.plan.id} to {target_gateway}", retryable=False) from exc

    def qkd_lane(self, neighbour_id: str) -> QkdPool:
        """The QKD pool lane this gateway seals hops to ``neighbour_id`` with."""
        neighbour = self.plan.neighbours[neighbour_id]
        if neighbour.qkd is None:
            raise KeyError(f"the link to {neighbour_id} has no QKD pool")
        return self._lanes[neighbour_id][neighbour.qkd.role]

    def qkd_lanes_of(self, neighbour_id: str) -> list[QkdPool]:
        """Both lanes of the QKD link to ``neighbour_id`` (none for a pqc-only link)."""
        return list(self._lanes.get(neighbour_id, {}).values())

    def neighbour_reachable(self, neighbour_id: str) -> bool:
        return not self.peers[neighbour_id].is_down

    # ----- one hop, sending ------------------------------------------------------------------------

    async def _forward(
        self,
        transfer_id: bytes,
        path: Sequence[str],
        hop: int,
        initiator: str,
        target: str,
        key: Key,
        extension_json: str,
        timeout_s: float,
        no_degrade: bool,
    ) -> str:
        """Send hop ``hop`` (this gateway is ``path[hop]``); returns the gateway storing the key."""
        peer = self.peers[path[hop + 1]]
        try:
            recipient = await peer.encapsulation_key()
        except grpc.aio.AioRpcError as exc:
            raise self._peer_failure(peer, exc) from None
        except TrustError as exc:
            raise RelayFailed(f"{peer.id} sent an encapsulation key we cannot trust: {exc}", retryable=False) from exc
        mode, qkd_key = await self._hop_protection(peer.neighbour, no_degrade, transfer_id)
        # Sealing is ~1 ms of CPU (mostly the ML-DSA signature). Yield first, so that when many hops become
        # ready at once, requests already queued on the loop are served between them, not after all of them.
        await asyncio.sleep(0)
        pending = seal_hop(
            key.key,
            route=HopRoute(transfer_id, hop, key.key_id),
            recipient=recipient,
            identity=self._crypto.identity,
            mode=mode,
            qkd_key=qkd_key,
            kem=self._crypto.kem,
            clock=self._crypto.clock,
        )
        request = pb.RelayKeyRequest(
            transfer_id=transfer_id,
            path=list(path),
            hop=hop,
            initiator_sae_id=initiator,
            target_sae_ids=[target],
            sealed_hop=pending.message.to_bytes(),
            extension_optional_json=extension_json,
            no_degrade=no_degrade,
        )
        self.metrics.hops_sent += 1
        sent = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        for attempt in range(1, self._settings.hop_attempts + 1):
            try:
                answer = await peer.relay.RelayKey(request, timeout=max(0.05, deadline - time.monotonic()))
            except grpc.aio.AioRpcError as exc:
                transport = exc.code() in TRANSPORT_FAILURES
                if transport and attempt < self._settings.hop_attempts and time.monotonic() < deadline:
                    self.metrics.hop_retries += 1
                    await asyncio.sleep(_RETRY_PAUSE_S * attempt)
                    continue  # the very same sealed message: the receiver answers it at most once
                raise self._peer_failure(peer, exc) from None
            try:
                pending.verify_confirmation(answer.key_confirmation)
            except ConfirmationFailed as exc:
                raise RelayFailed(f"{peer.id} confirmed hop {hop} wrongly: {exc}", retryable=False) from exc
            peer.mark_up()
            elapsed = time.perf_counter() - sent
            self.observer.hop_confirmed(peer.id, hop, elapsed)
            log.debug(
                "transfer %s: hop %d to %s (%s) confirmed in %.1f ms",
                transfer_id.hex(),
                hop,
                peer.id,
                mode,
                elapsed * 1000,
                extra={"transfer_id": transfer_id.hex(), "hop": hop, "neighbour": peer.id, "mode": str(mode)},
            )
            return answer.stored_at
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _hop_protection(
        self, neighbour: Neighbour, no_degrade: bool, transfer_id: bytes
    ) -> tuple[HopMode, QkdKey | None]:
        if neighbour.policy is LinkPolicy.PQC_ONLY or neighbour.qkd is None:
            return HopMode.PQC_ONLY, None
        lane = self.qkd_lane(neighbour.id)
        try:
            qkd_key = await lane.take_any()
        except PoolEmpty:
            if neighbour.policy is LinkPolicy.REQUIRE_QKD or no_degrade:
                self.metrics.qkd_exhausted += 1
                why = "its policy is require-qkd" if neighbour.policy is LinkPolicy.REQUIRE_QKD else "pre-relay waits"
                raise QkdExhausted(
                    f"QKD key on link {neighbour.qkd.link_id} ({self.plan.id}-{neighbour.id}) is exhausted and {why}"
                ) from None
            self.metrics.qkd_fallbacks += 1
            log.warning(
                "QKD pool of link %s is empty: this hop to %s is sealed pqc-only (policy qkd+pqc)",
                neighbour.qkd.link_id,
                neighbour.id,
                extra={"transfer_id": transfer_id.hex(), "link": neighbour.qkd.link_id},
            )
            return HopMode.PQC_ONLY, None
        except PoolError as exc:
            raise RelayFailed(f"QKD pool of link {neighbour.qkd.link_id}: {exc}", retryable=True) from exc
        return HopMode.QKD_PQC, QkdKey(qkd_key.key_id, qkd_key.key)

    def _peer_failure(self, peer: Peer, exc: grpc.aio.AioRpcError) -> RelayFailed:
        code, details = exc.code(), exc.details() or ""
        if code in TRANSPORT_FAILURES:
            peer.mark_down()
            link = tuple(sorted((self.plan.id, peer.id)))
            return RelayFailed(f"gateway {peer.id} did not answer ({code.name})", retryable=True, down_link=link)
        remote_down = dict(exc.trailing_metadata() or ()).get(DOWN_LINK_METADATA)
        if isinstance(remote_down, str) and remote_down.count(",") == 1:
            a, b = remote_down.split(",")
            self._remote_down[(a, b)] = self._remote_down[(b, a)] = time.monotonic() + self._settings.link_down_s
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            return QkdExhausted(details)
        if code is grpc.StatusCode.FAILED_PRECONDITION:
            peer.forget_encapsulation_key()  # it restarted with a new keyring: fetch its current key
        retryable = code not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
        return RelayFailed(f"{peer.id}: {details}", retryable=retryable)

    # ----- one hop, receiving ----------------------------------------------------------------------

    async def receive(self, request: pb.RelayKeyRequest, sender: str, time_left_s: float | None) -> pb.RelayKeyResponse:
        """Open one hop from ``sender`` (authenticated by mTLS), then store the key or forward it."""
        path, hop, target = self._check_hop_request(request, sender)
        transfer_id = request.transfer_id
        message = SealedHop.from_bytes(request.sealed_hop)
        if (message.header.transfer_id, message.header.hop) != (transfer_id, hop):
            # The replay guard keys on the signed header, the transfer log on the request: they must agree.
            raise MalformedMessage("transfer_id and hop of the request differ from the signed hop header")
        earlier = await self._transfers.claim(sender, transfer_id)
        if earlier is not None:
            if earlier.state is TransferState.DONE:
                return pb.RelayKeyResponse(key_confirmation=earlier.confirmation, stored_at=earlier.stored_at)
            if earlier.state is TransferState.PENDING:
                raise TransferInProgress(f"transfer {transfer_id.hex()} is being processed")
            raise RelayFailed(
                f"transfer {transfer_id.hex()} failed at {self.plan.id}: {earlier.reason}", retryable=True
            )
        try:
            response = await self._open_and_pass_on(request, message, path, hop, target, sender, time_left_s)
        except BaseException as exc:
            self.observer.hop_refused(type(exc).__name__)
            log.info(
                "transfer %s: hop from %s failed here: %s",
                transfer_id.hex(),
                sender,
                type(exc).__name__,
                extra={"transfer_id": transfer_id.hex(), "neighbour": sender},
            )
            await asyncio.shield(self._transfers.fail(sender, transfer_id, type(exc).__name__))
            raise
        await self._transfers.finish(sender, transfer_id, response.key_confirmation, response.stored_at)
        log.debug(
            "transfer %s: hop %d from %s done, stored at %s",
            transfer_id.hex(),
            request.hop,
            sender,
            response.stored_at,
            extra={"transfer_id": transfer_id.hex(), "neighbour": sender},
        )
        return response

    async def _open_and_pass_on(
        self,
        request: pb.RelayKeyRequest,
        message: SealedHop,
        path: Sequence[str],
        hop: int,
        target: str,
        sender: str,
        time_left_s: float | None,
    ) -> pb.RelayKeyResponse:
        neighbour = self.plan.neighbours[sender]
        allowed = _ALLOWED_MODES[neighbour.policy]
        opened = await open_hop(
            message,
            recipient=self._crypto.keyring,
            trust=self._crypto.trust,
            mode=message.header.mode if message.header.mode in allowed else allowed[0],
            replay=self._crypto.replay,
            clock=self._crypto.clock,
            fetch_qkd_key=lambda key_id: self._received_qkd_key(neighbour, key_id),
            expected_sender=sender,
        )
        self.metrics.hops_received += 1
        key = Key(check_key_id(opened.header.key_id), opened.key)
        if path[-1] == self.plan.id:
            await self._store_for_target(request.initiator_sae_id, target, key)
            stored_at = self.plan.id
        else:
            budget = self._settings.hop_timeout_s if time_left_s is None else max(0.05, time_left_s - 0.1)
            stored_at = await self._forward(
                request.transfer_id,
                path,
                hop + 1,
                request.initiator_sae_id,
                target,
                key,
                request.extension_optional_json,
                budget,
                request.no_degrade,
            )
        return pb.RelayKeyResponse(key_confirmation=opened.confirmation, stored_at=stored_at)

    async def _store_for_target(self, initiator: str, target: str, key: Key) -> None:
        """The last gateway's part: hold ``key`` for ``target``, refusing a key_ID used before."""
        if not await self._store.put_for_slave(initiator, target, [key]):
            raise RelayFailed(f"key_ID {key.key_id} was already used for {target}", retryable=False)

    async def _received_qkd_key(self, neighbour: Neighbour, key_id: str) -> bytes:
        if neighbour.qkd is None:
            raise TransferRefused(f"link to {neighbour.id} has no QKD key pool")
        try:
            return (await self._lanes[neighbour.id][neighbour.qkd.role.peer].take_specific(key_id)).key
        except PoolError as exc:
            raise RelayFailed(f"QKD key {key_id} of link {neighbour.qkd.link_id}: {exc}", retryable=True) from exc

    def _check_hop_request(self, request: pb.RelayKeyRequest, sender: str) -> tuple[list[str], int, str]:
        path, hop = list(request.path), request.hop
        if len(request.transfer_id) != 16:
            raise TransferRefused("transfer_id must be 16 bytes")
        if len(set(path)) != len(path) or not 0 <= hop < len(path) - 1:
            raise TransferRefused("path must name distinct gateways and hop must index a sender on it")
        if path[hop] != sender or path[hop + 1] != self.plan.id:
            raise TransferRefused(f"hop {hop} of {path} is not from {sender} to {self.plan.id}")
        if sender not in self.plan.neighbours:
            raise TransferRefused(f"{sender} is not a neighbour of {self.plan.id}")
        if path[-1] != self.plan.id and path[hop + 2] not in self.plan.neighbours:
            raise TransferRefused(f"{path[hop + 2]} is not a neighbour of {self.plan.id}")
        if len(request.target_sae_ids) != 1:
            raise TransferRefused("a relayed key has exactly one target SAE")
        target = request.target_sae_ids[0]
        if self.plan.sae_homes.get(target) != path[-1]:
            raise TransferRefused(f"target SAE {target!r} is not served by {path[-1]}")
        if not 1 <= len(request.initiator_sae_id) <= MAX_SAE_ID_LENGTH:  # may live in another KMS's domain
            raise TransferRefused(f"initiator SAE ID must be 1 to {MAX_SAE_ID_LENGTH} characters")
        return path, hop, target

    # ----- voiding -----------------------------------------------------------------------------------

    def void_later(
        self, initiator: str, target: str, key_ids: Sequence[str], path: Sequence[str] | None = None
    ) -> None:
        """Void in the background: the SAE's answer (an error) must not wait for a path that is failing."""
        task = asyncio.create_task(self.void(initiator, target, key_ids, path))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def void(
        self, initiator: str, target: str, key_ids: Sequence[str], path: Sequence[str] | None = None
    ) -> list[str]:
        """Withdraw keys waiting for ``target`` at its gateway; returns the key_IDs voided (best effort)."""
        if path is None:
            try:
                path = self.route_to(self._home_of(target)).gateways  # just this gateway for a local target
            except RelayFailed as exc:
                log.warning("cannot void %d keys for %s: %s", len(key_ids), target, exc)
                return []
        request = pb.VoidKeysRequest(
            key_ids=list(key_ids), initiator_sae_id=initiator, target_sae_ids=[target], path=list(path), hop=0
        )
        return await self._void_from(request, 0)

    async def receive_void(self, request: pb.VoidKeysRequest, sender: str) -> list[str]:
        path, hop = list(request.path), request.hop
        if not 0 <= hop < len(path) - 1 or path[hop] != sender or path[hop + 1] != self.plan.id:
            raise TransferRefused(f"void hop {hop} of {path} is not from {sender} to {self.plan.id}")
        if len(request.target_sae_ids) != 1:
            raise TransferRefused("a void names exactly one target SAE")
        return await self._void_from(request, hop + 1)

    async def _void_from(self, request: pb.VoidKeysRequest, position: int) -> list[str]:
        path = list(request.path)
        target = request.target_sae_ids[0]
        if position == len(path) - 1:
            if self.plan.sae_homes.get(target) != self.plan.id:
                raise TransferRefused(f"target SAE {target!r} is not served by {self.plan.id}")
            voided = await self._store.void_for_slave(request.initiator_sae_id, target, list(request.key_ids))
            self.metrics.keys_voided += len(voided)
            return voided
        peer = self.peers.get(path[position + 1])
        if peer is None:
            raise TransferRefused(f"{path[position + 1]} is not a neighbour of {self.plan.id}")
        forwarded = pb.VoidKeysRequest(
            key_ids=request.key_ids,
            initiator_sae_id=request.initiator_sae_id,
            target_sae_ids=request.target_sae_ids,
            path=path,
            hop=position,
        )
        try:
            answer = await peer.relay.VoidKeys(forwarded, timeout=self._settings.hop_timeout_s)
        except grpc.aio.AioRpcError as exc:
            log.warning("void of %d keys via %s failed: %s", len(request.key_ids), peer.id, exc.details())
            return []
        return list(answer.voided_key_ids)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _home_of(self, sae_id: str) -> str:
        home = self.plan.sae_homes.get(sae_id)
        if home is None:
            raise TransferRefused(f"SAE {sae_id!r} is not in the topology")
        return home
