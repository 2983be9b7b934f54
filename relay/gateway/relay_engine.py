"""Hop-by-hop relay of end-to-end keys: originate, forward, store at the target gateway, void on failure.

The originating gateway draws the route; every gateway on it protects the key for the next hop and
waits for that hop's confirmation, which the next gateway sends only once the key is stored at the last
gateway (:mod:`relay.gateway.forwarding`). So the answer to hop 0 is the end-to-end ack, and the master
SAE gets a key only after its slave's gateway holds it (the 020 rule). A failure anywhere voids the key
along the path; nothing is half-delivered.

The engine works on domain values only (:class:`HopRequest`, :class:`HopResult`, :class:`Key`); the
transport that carries them is injected, and its failures arrive as :class:`RelayFailed`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Iterable, Sequence

from relay.crypto import SealedHop
from relay.crypto.errors import MalformedMessage
from relay.domain import MAX_SAE_ID_LENGTH, Key, check_key_id, new_key_id
from relay.gateway.config import GatewayPlan, GatewaySettings
from relay.gateway.errors import QkdExhausted, RelayFailed, RouteDry, TransferRefused
from relay.gateway.fair_share import FairShares
from relay.gateway.foreign_border import ForeignBorder
from relay.gateway.forwarding import HopForwarder
from relay.gateway.hops import HopRequest, HopResult
from relay.gateway.relay_events import RelayObserver, RelayOrigin
from relay.gateway.routing import Router
from relay.gateway.transfers import TransferLog
from relay.gateway.voiding import Voiding
from relay.pool import RelayedKeyStore

log = logging.getLogger(__name__)

HOP_BUDGET_MARGIN_S = 0.1  # left to a receiving gateway to answer after the hops behind it
MIN_FOREIGN_ATTEMPT_S = 0.5  # a retry towards a foreign KMS needs at least this much of its deadline left
MIN_HOP_BUDGET_S = 0.05


GatewayPath = tuple[str, ...]  # the gateways a key was relayed along, its origin first


def keys_by_path(relayed: Iterable[tuple[Key, GatewayPath]]) -> dict[GatewayPath, list[str]]:
    """The key_IDs of relayed keys, grouped by the path each took: what one void each can withdraw."""
    groups: dict[GatewayPath, list[str]] = {}
    for key, path in relayed:
        groups.setdefault(path, []).append(key.key_id)
    return groups


def new_key(size_bytes: int) -> Key:
    """A fresh end-to-end key and its key_ID (a UUIDv7 that carries its creation time, see ``new_key_id``)."""
    return Key(new_key_id(), os.urandom(size_bytes))


class RelayEngine:
    def __init__(
        self,
        plan: GatewayPlan,
        settings: GatewaySettings,
        hops: HopForwarder,
        router: Router,
        store: RelayedKeyStore,
        transfers: TransferLog,
        voiding: Voiding,
        observer: RelayObserver,
        foreign: ForeignBorder | None = None,
        shares: FairShares | None = None,
    ) -> None:
        """``foreign``: the hand-over to the foreign KMS domains this gateway borders, if any; ``shares``:
        the SAE pairs' fair shares charged for keys relayed on demand (none: unlimited)."""
        self._plan = plan
        self._settings = settings
        self._hops = hops
        self._router = router
        self._store = store
        self._transfers = transfers
        self._voiding = voiding
        self._observer = observer
        self._foreign = foreign
        self._shares = shares

    def withdraw(self, initiator: str, target: str, key_ids: list[str], path: Sequence[str] | None = None) -> None:
        """Void relayed keys no master got, in the background: at the target's gateway, or at the foreign
        KMS a key was handed over to (over 020 from here if this gateway borders it, else through its border)."""
        if self._foreign is not None and self._foreign.borders(target):
            self._foreign.void_later(initiator, target, key_ids)
        else:
            self._voiding.void_later(initiator, target, key_ids, path)

    # ----- originating side -------------------------------------------------------------------------

    async def relay_new_keys(
        self,
        initiator: str,
        target: str,
        number: int,
        size_bytes: int,
        extension_json: str = "",
    ) -> list[Key]:
        """``number`` fresh keys an SAE asked for, shared with ``target``, each relayed end to end; all or none.
        The pair's fair share pays first (:class:`OverShare` if it cannot)."""
        await self.charge(initiator, target, number)
        outcomes = await asyncio.gather(
            *(self._relay_fresh_key(initiator, target, size_bytes, extension_json) for _ in range(number)),
            return_exceptions=True,
        )
        relayed = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            for path, key_ids in keys_by_path(relayed).items():  # each along the path it took
                self.withdraw(initiator, target, key_ids, path)
            raise failures[0]
        return [key for key, _ in relayed]

    async def charge(self, initiator: str, target: str, number: int) -> None:
        """Charge the pair's shares for ``number`` keys along the route they would take now (:class:`OverShare`
        if it cannot pay); with no route to charge along, nothing is charged, and the relays answer why (a
        dry lane, a link down). Keys an SAE asks for and keys another KMS hands over over 020 both pay."""
        if self._shares is None:
            return
        qkd_links = self._router.qkd_links_towards(self._router.home_of(target))
        if qkd_links is not None:
            await self._shares.admit(initiator, target, number, qkd_links)

    async def _relay_fresh_key(
        self, initiator: str, target: str, size_bytes: int, extension_json: str
    ) -> tuple[Key, GatewayPath]:
        """The key relayed and the path it took. Each attempt uses a new key and key_ID: the SAE never saw
        the failed one, which is voided.

        For an SAE of a foreign domain every attempt shares one deadline (``foreign_ack_deadline_s``): the
        master's answer comes within it, a retry only gets what the failed attempt left."""
        deadline = None
        if target in self._plan.foreign_saes:
            deadline = time.monotonic() + self._settings.foreign_ack_deadline_s
        for attempt in range(1, self._settings.relay_attempts + 1):
            key = new_key(size_bytes)
            left_s = None if deadline is None else deadline - time.monotonic()
            try:
                return key, await self.relay_key(initiator, target, key, extension_json, timeout_s=left_s)
            except RelayFailed as failure:
                # A lane found dry on the way was reported with the refusal: the next route avoids it, or is
                # refused before start (RouteDry), so one more attempt spends key only on another route.
                dry_on_the_way = isinstance(failure, QkdExhausted) and not isinstance(failure, RouteDry)
                out_of_time = deadline is not None and deadline - time.monotonic() < MIN_FOREIGN_ATTEMPT_S
                retry = (failure.retryable or dry_on_the_way) and not out_of_time
                if not retry or attempt == self._settings.relay_attempts:
                    raise
                log.info("relay of a key for %s -> %s failed (%s); retrying", initiator, target, failure)
        raise AssertionError("unreachable: the last attempt re-raises")

    async def relay_key(
        self,
        initiator: str,
        target: str,
        key: Key,
        extension_json: str = "",
        *,
        origin: RelayOrigin = RelayOrigin.SAE,
        timeout_s: float | None = None,
    ) -> GatewayPath:
        """Relay ``key`` to ``target``'s gateway and store it there; returns, once it is stored, the path it
        took (a void of it must name that path, which a later route may not be).

        A pre-relayed key never degrades a qkd+pqc hop to pqc-only (``no_degrade``, see the proto): nobody
        waits for it, so it waits for QKD key instead of spending the fallback. ``timeout_s``: how long
        the caller waits (default: a hop timeout, plus the foreign ack deadline for a foreign target).
        """
        target_gateway = self._router.home_of(target)
        foreign = target in self._plan.foreign_saes
        if timeout_s is None:
            timeout_s = self._settings.hop_timeout_s + (self._settings.foreign_ack_deadline_s if foreign else 0)
        if target_gateway == self._plan.id:
            budget_s = min(timeout_s, self._settings.foreign_ack_deadline_s)
            await self._store_for_target(initiator, target, key, (self._plan.id,), budget_s)
            return (self._plan.id,)
        try:
            route = await self._router.route_for_key(target_gateway, no_degrade=origin.no_degrade)
        except RouteDry as exc:  # a relay failure too, refused before any QKD key was spent
            counts = self._observer.counts.of(origin)
            counts.relay_failures += 1
            counts.not_started += 1
            self._observer.relay_failed(type(exc).__name__, origin)
            raise
        transfer_id = uuid.uuid4().bytes
        started = time.perf_counter()
        try:
            await self._hops.forward(
                transfer_id,
                route.gateways,
                0,
                initiator,
                target,
                key,
                extension_json=extension_json,
                timeout_s=timeout_s,
                no_degrade=origin.no_degrade,
            )
        except RelayFailed as exc:
            self._observer.counts.of(origin).relay_failures += 1
            self._observer.relay_failed(type(exc).__name__, origin)
            log.info("transfer %s failed: %s", transfer_id.hex(), exc.message, extra={"transfer_id": transfer_id.hex()})
            if not isinstance(exc, QkdExhausted):  # QkdExhausted: refused before the last hop, nothing stored
                self._voiding.void_later(initiator, target, [key.key_id], route.gateways)
            raise
        elapsed = time.perf_counter() - started
        self._observer.counts.of(origin).keys_relayed += 1
        self._observer.relay_done(target_gateway, elapsed)
        log.debug(
            "transfer %s relayed over %s in %.1f ms",
            transfer_id.hex(),
            "-".join(route.gateways),
            elapsed * 1000,
            extra={"transfer_id": transfer_id.hex(), "route": "-".join(route.gateways), "key_id": key.key_id},
        )
        return route.gateways

    # ----- receiving side ----------------------------------------------------------------------------

    async def receive(self, request: HopRequest, sender: str, time_left_s: float | None) -> HopResult:
        """Open one hop from ``sender`` (authenticated by the transport), then store the key or forward it."""
        target = self._check_hop_request(request, sender)
        message = SealedHop.from_bytes(request.sealed_hop)
        if (message.header.transfer_id, message.header.hop) != (request.transfer_id, request.hop):
            # The replay guard keys on the signed header, the transfer log on the request: they must agree.
            raise MalformedMessage("transfer_id and hop of the request differ from the signed hop header")
        result = await self._transfers.answer_once(
            sender, request.transfer_id, lambda: self._attempt(request, message, target, sender, time_left_s)
        )
        log.debug(
            "transfer %s: hop %d from %s done, stored at %s",
            request.transfer_id.hex(),
            request.hop,
            sender,
            result.stored_at,
            extra={"transfer_id": request.transfer_id.hex(), "neighbour": sender},
        )
        return result

    async def _attempt(
        self, request: HopRequest, message: SealedHop, target: str, sender: str, time_left_s: float | None
    ) -> HopResult:
        try:
            return await self._open_and_pass_on(request, message, target, sender, time_left_s)
        except BaseException as exc:
            self._observer.hop_refused(type(exc).__name__)
            log.info(
                "transfer %s: hop from %s failed here: %s",
                request.transfer_id.hex(),
                sender,
                type(exc).__name__,
                extra={"transfer_id": request.transfer_id.hex(), "neighbour": sender},
            )
            raise

    async def _open_and_pass_on(
        self, request: HopRequest, message: SealedHop, target: str, sender: str, time_left_s: float | None
    ) -> HopResult:
        opened = await self._hops.open(message, sender)
        key = Key(check_key_id(opened.header.key_id), opened.key)
        if time_left_s is None:
            budget = self._settings.hop_timeout_s
        else:
            budget = max(MIN_HOP_BUDGET_S, time_left_s - HOP_BUDGET_MARGIN_S)
        if request.path[-1] == self._plan.id:
            await self._store_for_target(request.initiator_sae_id, target, key, request.path, budget)
            return HopResult(opened.confirmation, self._plan.id)
        stored_at = await self._hops.forward(
            request.transfer_id,
            request.path,
            request.hop + 1,
            request.initiator_sae_id,
            target,
            key,
            extension_json=request.extension_json,
            timeout_s=budget,
            no_degrade=request.no_degrade,
        )
        return HopResult(opened.confirmation, stored_at)

    async def _store_for_target(
        self, initiator: str, target: str, key: Key, path: tuple[str, ...], budget_s: float
    ) -> None:
        """The last gateway's part: hold ``key`` for ``target`` with the path it came along (only a void
        signed by that path's origin withdraws it), refusing a key_ID used or voided before; or, for an
        SAE of a foreign domain, hand it over there and return once acked ``relayed`` within ``budget_s``."""
        if target in self._plan.foreign_saes:
            if self._foreign is None or not self._foreign.borders(target):
                raise RelayFailed(f"{self._plan.id} does not border the KMS domain of {target}", retryable=False)
            await self._foreign.hand_over(initiator, target, key, budget_s)
            return
        if not await self._store.put_for_slave(initiator, target, [key], path=path):
            raise RelayFailed(f"key_ID {key.key_id} was already used for {target}", retryable=False)

    def _check_hop_request(self, request: HopRequest, sender: str) -> str:
        """The target SAE of a hop this gateway may process; a :class:`TransferRefused` otherwise."""
        path, hop, own, neighbours = request.path, request.hop, self._plan.id, self._plan.neighbours
        if len(request.transfer_id) != 16:
            raise TransferRefused("transfer_id must be 16 bytes")
        if len(set(path)) != len(path) or not 0 <= hop < len(path) - 1:
            raise TransferRefused("path must name distinct gateways and hop must index a sender on it")
        if path[hop] != sender or path[hop + 1] != own:
            raise TransferRefused(f"hop {hop} of {list(path)} is not from {sender} to {own}")
        if sender not in neighbours:
            raise TransferRefused(f"{sender} is not a neighbour of {own}")
        if path[-1] != own and path[hop + 2] not in neighbours:
            raise TransferRefused(f"{path[hop + 2]} is not a neighbour of {own}")
        if len(request.target_sae_ids) != 1:
            raise TransferRefused("a relayed key has exactly one target SAE")
        target = request.target_sae_ids[0]
        if self._plan.gateway_of(target) != path[-1]:
            raise TransferRefused(f"target SAE {target!r} is not served by {path[-1]}")
        if not 1 <= len(request.initiator_sae_id) <= MAX_SAE_ID_LENGTH:  # may live in another KMS's domain
            raise TransferRefused(f"initiator SAE ID must be 1 to {MAX_SAE_ID_LENGTH} characters")
        return target
