"""Hop-by-hop relay of end-to-end keys: originate, forward, store at the target gateway, void on failure.

The originating gateway draws the route; every gateway on it protects the key for the next hop, in a
frame with whatever else goes that way (:mod:`relay.gateway.forwarding`), and waits for the frame's
confirmation, which the next gateway sends only once each key in it is stored at its last gateway or has
failed. So the answer to hop 0 is each key's end-to-end ack, and the master SAE gets a key only after its
slave's gateway holds it (the 020 rule). A key that fails anywhere is voided along its path; nothing is
half-delivered, and one key's failure does not fail the others of its frame.

The engine works on domain values only (:class:`ItemHeader`, :class:`ItemOutcome`, :class:`FrameAnswer`,
:class:`Key`); the transport that carries them is injected, and its failures arrive as
:class:`RelayFailed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterable, Sequence

from relay.crypto import ItemHeader, SealedFrame
from relay.domain import MAX_SAE_ID_LENGTH, Key, check_key_id, new_key_id
from relay.gateway.config import GatewayPlan, GatewaySettings
from relay.gateway.errors import QkdExhausted, RelayFailed, RouteDry, TransferRefused
from relay.gateway.fair_share import FairShares
from relay.gateway.foreign_border import ForeignBorder
from relay.gateway.forwarding import HopForwarder
from relay.gateway.hops import FrameAnswer, ItemOutcome, encode_outcomes
from relay.gateway.relay_events import RelayObserver, RelayOrigin
from relay.gateway.routing import Route, Router
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
        sizes = [size_bytes * 8] * number
        route = self._router.route_now(self._router.home_of(target))
        await self._charge_along(initiator, target, sizes, route)
        path = None if route is None or route.hops == 0 else route.gateways  # None: stored here, or no route
        admission = (
            contextlib.nullcontext()
            if path is None
            else self._hops.admit_request(path, 0, sizes, self._timeout(target), no_degrade=False)
        )
        with admission:
            outcomes = await asyncio.gather(
                *(
                    self._relay_fresh_key(initiator, target, size_bytes, extension_json, admitted=path is not None)
                    for _ in range(number)
                ),
                return_exceptions=True,
            )
        relayed = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            for path, key_ids in keys_by_path(relayed).items():  # each along the path it took
                self.withdraw(initiator, target, key_ids, path)
            raise failures[0]
        return [key for key, _ in relayed]

    async def charge(self, initiator: str, target: str, key_sizes_bits: Sequence[int]) -> None:
        """Charge the pair's shares for keys of these sizes along the route they would take now
        (:class:`OverShare` if it cannot pay); with no route to charge along, nothing is charged, and the
        relays answer why (a dry lane, a link down). Keys an SAE asks for and keys another KMS hands over
        over 020 both pay."""
        await self._charge_along(
            initiator, target, key_sizes_bits, self._router.route_now(self._router.home_of(target))
        )

    async def _charge_along(
        self, initiator: str, target: str, key_sizes_bits: Sequence[int], route: Route | None
    ) -> None:
        if self._shares is not None and route is not None:
            qkd_links = tuple(link.qkd_link for link in route.links if link.qkd_link)
            await self._shares.admit(initiator, target, key_sizes_bits, qkd_links)

    def _timeout(self, target: str) -> float:
        """How long a relay to ``target`` may take: a hop timeout, plus the foreign ack deadline for a
        foreign target."""
        foreign = target in self._plan.foreign_saes
        return self._settings.hop_timeout_s + (self._settings.foreign_ack_deadline_s if foreign else 0)

    async def _relay_fresh_key(
        self, initiator: str, target: str, size_bytes: int, extension_json: str, *, admitted: bool
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
                relayed = self.relay_key(initiator, target, key, extension_json, timeout_s=left_s, admitted=admitted)
                return key, await relayed
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
        admitted: bool = False,
    ) -> GatewayPath:
        """Relay ``key`` to ``target``'s gateway and store it there; returns, once it is stored, the path it
        took (a void of it must name that path, which a later route may not be).

        A pre-relayed key never degrades a qkd+pqc hop to pqc-only (``no_degrade``, see the proto): nobody
        waits for it, so it waits for QKD key instead of spending the fallback. ``timeout_s``: how long
        the caller waits (default: a hop timeout, plus the foreign ack deadline for a foreign target).
        """
        target_gateway = self._router.home_of(target)
        if timeout_s is None:
            timeout_s = self._timeout(target)
        if target_gateway == self._plan.id:
            budget_s = min(timeout_s, self._settings.foreign_ack_deadline_s)
            if not await self._store_for_target(initiator, target, [key], (self._plan.id,), budget_s):
                raise RelayFailed(f"key_ID {key.key_id} was already used for {target}", retryable=False)
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
                admitted=admitted,
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

    async def receive_frame(self, sealed_frame: bytes, sender: str, time_left_s: float | None) -> FrameAnswer:
        """Open a frame from ``sender`` (authenticated by the transport), then store or forward each key in it;
        the answer comes once every key has its outcome, and authenticates all of them."""
        message = SealedFrame.from_bytes(sealed_frame)
        frame_id = message.header.frame_id
        # The record is of these very bytes (a retry resends them), not of the frame_id alone, which anyone
        # may copy into a frame that fails to verify: such a frame gets a record of its own.
        answer = await self._transfers.answer_once(
            sender, message.header.suite.digest(sealed_frame), lambda: self._attempt(message, sender, time_left_s)
        )
        log.debug(
            "frame %s: %d keys from %s answered",
            frame_id.hex(),
            len(message.header.items),
            sender,
            extra={
                "frame_id": frame_id.hex(),
                "neighbour": sender,
                "transfer_ids": [item.transfer_id.hex() for item in message.header.items],
            },
        )
        return answer

    async def _attempt(self, message: SealedFrame, sender: str, time_left_s: float | None) -> FrameAnswer:
        try:
            opened = await self._hops.open(message, sender)
        except BaseException as exc:
            self._observer.hop_refused(type(exc).__name__)
            log.info(
                "frame %s from %s refused here: %s",
                message.header.frame_id.hex(),
                sender,
                type(exc).__name__,
                extra={"frame_id": message.header.frame_id.hex(), "neighbour": sender},
            )
            raise
        if time_left_s is None:
            budget = self._settings.hop_timeout_s
        else:
            budget = max(MIN_HOP_BUDGET_S, time_left_s - HOP_BUDGET_MARGIN_S)
        items = list(zip(opened.header.items, opened.keys, strict=True))
        stored_here = [(item, key) for item, key in items if item.path[-1] == self._plan.id]
        outcomes = dict(await self._store_here(stored_here, sender, budget))
        passed_on = [(index, item, key) for index, (item, key) in enumerate(items) if item.path[-1] != self._plan.id]
        results = await asyncio.gather(*(self._pass_on(item, key, sender, budget) for _, item, key in passed_on))
        outcomes.update((items[index][0].transfer_id, outcome) for (index, _, _), outcome in zip(passed_on, results))
        encoded = encode_outcomes(tuple(outcomes[item.transfer_id] for item, _ in items))
        return FrameAnswer(encoded, opened.confirm(encoded))

    async def _pass_on(self, item: ItemHeader, key: bytes, sender: str, budget_s: float) -> ItemOutcome:
        """Forward one key of a frame to the next gateway of its path (in a frame of its own link)."""
        try:
            target = self._check_item(item, sender)
            stored_at = await self._hops.forward(
                item.transfer_id,
                item.path,
                item.hop + 1,
                item.initiator,
                target,
                Key(item.key_id, key),
                extension_json=item.extension_json,
                timeout_s=budget_s,
                no_degrade=item.no_degrade,
            )
        except Exception as exc:
            return self._failed(item, sender, exc)
        return ItemOutcome.stored(stored_at)

    async def _store_here(
        self, items: Sequence[tuple[ItemHeader, bytes]], sender: str, budget_s: float
    ) -> list[tuple[bytes, ItemOutcome]]:
        """The last gateway's part for the keys of a frame that end here: one store call per SAE pair and
        path (a foreign SAE's keys are handed over one by one); each key's outcome by transfer_id."""
        outcomes: list[tuple[bytes, ItemOutcome]] = []
        groups: dict[tuple[str, str, tuple[str, ...], str], list[tuple[ItemHeader, Key]]] = {}
        for item, key in items:
            try:
                target = self._check_item(item, sender)
                alone = item.key_id if target in self._plan.foreign_saes else ""  # each hand-over its own outcome
                groups.setdefault((item.initiator, target, item.path, alone), []).append((item, Key(item.key_id, key)))
            except Exception as exc:
                outcomes.append((item.transfer_id, self._failed(item, sender, exc)))
        stored = await asyncio.gather(
            *(self._store_for_target(initiator, target, [key for _, key in group], path, budget_s)
              for (initiator, target, path, _), group in groups.items()),
            return_exceptions=True,
        )  # fmt: skip
        for group, result in zip(groups.values(), stored, strict=True):
            for item, relayed in group:
                if isinstance(result, BaseException):
                    outcomes.append((item.transfer_id, self._failed(item, sender, result)))
                elif relayed.key_id in result:
                    outcomes.append((item.transfer_id, ItemOutcome.stored(self._plan.id)))
                else:
                    used = RelayFailed(f"key_ID {relayed.key_id} was already used for {item.target}", retryable=False)
                    outcomes.append((item.transfer_id, self._failed(item, sender, used)))
        return outcomes

    def _failed(self, item: ItemHeader, sender: str, exc: BaseException) -> ItemOutcome:
        if isinstance(exc, asyncio.CancelledError):
            raise exc
        self._observer.hop_refused(type(exc).__name__)
        log.info(
            "transfer %s: key from %s failed here: %s",
            item.transfer_id.hex(),
            sender,
            type(exc).__name__,
            extra={"transfer_id": item.transfer_id.hex(), "neighbour": sender},
        )
        return ItemOutcome.of_failure(exc)

    async def _store_for_target(
        self, initiator: str, target: str, keys: Sequence[Key], path: tuple[str, ...], budget_s: float
    ) -> list[str]:
        """The last gateway's part: hold ``keys`` for ``target`` with the path they came along (only a void
        signed by that path's origin withdraws them); returns the key_IDs stored, never one used or voided
        before. For an SAE of a foreign domain (one key per call), hand it over there, returning once acked
        ``relayed`` within ``budget_s`` (a failed hand-over raises)."""
        if target in self._plan.foreign_saes:
            if self._foreign is None or not self._foreign.borders(target):
                raise RelayFailed(f"{self._plan.id} does not border the KMS domain of {target}", retryable=False)
            for key in keys:
                await self._foreign.hand_over(initiator, target, key, budget_s)
            return [key.key_id for key in keys]
        return await self._store.put_for_slave(initiator, target, keys, path=path)

    def _check_item(self, item: ItemHeader, sender: str) -> str:
        """The target SAE of a key this gateway may process; a :class:`TransferRefused` otherwise."""
        path, hop, own, neighbours = item.path, item.hop, self._plan.id, self._plan.neighbours
        if len(set(path)) != len(path) or not 0 <= hop < len(path) - 1:
            raise TransferRefused("path must name distinct gateways and hop must index a sender on it")
        if path[hop] != sender or path[hop + 1] != own:
            raise TransferRefused(f"hop {hop} of {list(path)} is not from {sender} to {own}")
        if sender not in neighbours:
            raise TransferRefused(f"{sender} is not a neighbour of {own}")
        if path[-1] != own and path[hop + 2] not in neighbours:
            raise TransferRefused(f"{path[hop + 2]} is not a neighbour of {own}")
        if self._plan.gateway_of(item.target) != path[-1]:
            raise TransferRefused(f"target SAE {item.target!r} is not served by {path[-1]}")
        if not 1 <= len(item.initiator) <= MAX_SAE_ID_LENGTH:  # may live in another KMS's domain
            raise TransferRefused(f"initiator SAE ID must be 1 to {MAX_SAE_ID_LENGTH} characters")
        origin = self._plan.gateway_of(item.initiator)  # None: an SAE another KMS named over 020 at path[0]
        if origin is not None and origin != path[0]:
            raise TransferRefused(f"initiator SAE {item.initiator!r} is served by {origin}, not by {path[0]}")
        try:
            check_key_id(item.key_id)
        except ValueError as exc:
            raise TransferRefused(str(exc)) from None
        return item.target
