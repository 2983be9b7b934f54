"""Withdrawing relayed keys that must never be delivered: the undo of a relay that did not complete.

A void travels the key's path like a hop and removes, at the target's gateway, the keys of the SAE pair
that were relayed along exactly that path. The rules that make it safe against a misbehaving neighbour:

- Only the origin of the path (``path[0]``, the gateway that relayed the keys) issues a void, signed
  with its ML-DSA identity (:mod:`relay.crypto.void`). The last gateway verifies the signature, the
  freshness window and the replay cache before touching any key; gateways in between check the
  signature and freshness too, so a forgery stops at the first gateway it reaches.
- The last gateway voids only keys recorded with the void's path: a gateway cannot withdraw keys
  another one relayed. A void of "all" (no key_IDs) is accepted only from the initiator's home gateway
  or, for an initiator outside the topology, from the gateway that took its keys in over 020 (which is
  then ``path[0]`` of those keys: the path scoping confines it to them).
- A void never withdraws a key that may have been handed out: the store skips reserved and delivered
  keys, and the origin voids only keys it never released. Voiding "all" for one of this gateway's own
  014 masters would hit keys already released from its ready pool or by an answered enc_keys, so the
  origin instead withdraws that pair's ready pool and voids exactly the keys withdrawn (no production
  path asks for it: "all" comes only from 020 voids, whose initiator is a foreign SAE).
- Named key_IDs not present at the last gateway are tombstoned, so a hop still in flight cannot store
  a voided key afterwards.

It is best effort by design: a key that cannot be voided (its path is failing, or the void was issued
without the path the key took and the route changed since) still expires, and a key already delivered
is reported as not voided. The SAE's answer never waits for a void (:meth:`Voiding.void_later`), since
the path that made the relay fail is likely failing still.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from relay.crypto import VoidOrder, new_void_order, sign_void
from relay.gateway.config import GatewayPlan
from relay.gateway.errors import RelayFailed, TransferRefused
from relay.gateway.hop_protection import HopCrypto
from relay.gateway.hops import HopTransport, VoidRequest
from relay.gateway.relay_events import RelayObserver
from relay.gateway.routing import Router
from relay.pool import PoolError, RelayedKeyStore

log = logging.getLogger(__name__)


class Voiding:
    def __init__(
        self,
        plan: GatewayPlan,
        router: Router,
        store: RelayedKeyStore,
        transport: HopTransport,
        observer: RelayObserver,
        crypto: HopCrypto,
        *,
        hop_timeout_s: float,
    ) -> None:
        self._plan = plan
        self._router = router
        self._store = store
        self._transport = transport
        self._observer = observer
        self._crypto = crypto
        self._hop_timeout_s = hop_timeout_s
        self._background: set[asyncio.Task[list[str]]] = set()

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
        """Withdraw keys this gateway relayed to ``target`` along ``path`` (the current route if None) and
        never released; returns the key_IDs voided (best effort). Empty ``key_ids``: all of the pair's."""
        if path is None:
            try:
                path = self._router.route_to(self._router.home_of(target)).gateways  # just us for a local target
            except RelayFailed as exc:
                log.warning("cannot void %d keys for %s: %s", len(key_ids), target, exc)
                return []
        if not key_ids and self._plan.sae_homes.get(initiator) == self._plan.id:
            key_ids = await self._withdraw_ready(initiator, target)
            if not key_ids:
                return []
        order = new_void_order(tuple(key_ids), initiator, target, tuple(path), clock=self._crypto.clock)
        if len(order.path) == 1:
            return await self._void_here(order)
        signature = sign_void(order, self._crypto.identity)
        request = VoidRequest(
            order.key_ids, initiator, (target,), order.path, 0, order.nonce, order.issued_at_ms, signature
        )
        return await self._send_on(request)

    async def receive_void(self, request: VoidRequest, sender: str) -> list[str]:
        """A void from neighbour ``sender``: verified, then carried on or, at the last gateway, applied."""
        path, hop, own = request.path, request.hop, self._plan.id
        if not 0 <= hop < len(path) - 1 or path[hop] != sender or path[hop + 1] != own:
            raise TransferRefused(f"void hop {hop} of {list(path)} is not from {sender} to {own}")
        if len(request.target_sae_ids) != 1:
            raise TransferRefused("a void names exactly one target SAE")
        order = request.order()
        if hop + 1 < len(path) - 1:  # refuse a forgery here already; the last gateway checks for replays
            self._crypto.check_void(order, request.signature)
            forwarded = VoidRequest(
                order.key_ids,
                order.initiator_sae_id,
                request.target_sae_ids,
                path,
                hop + 1,
                order.nonce,
                order.issued_at_ms,
                request.signature,
            )
            return await self._send_on(forwarded)
        await self._crypto.verify_void(order, request.signature)
        return await self._void_here(order)

    async def _withdraw_ready(self, initiator: str, target: str) -> list[str]:
        """Empty the pair's ready pool so none of its keys loses its slave copy; returns what was withdrawn."""
        try:
            return await self._store.withdraw_ready(initiator, target, [])
        except PoolError as exc:
            log.warning("cannot withdraw the ready keys of %s -> %s before voiding them: %s", initiator, target, exc)
            return []

    async def _void_here(self, order: VoidOrder) -> list[str]:
        """Apply a verified (or our own) void as the target's gateway: only keys relayed along its path."""
        initiator, target, origin = order.initiator_sae_id, order.target_sae_id, order.origin
        if self._plan.sae_homes.get(target) != self._plan.id:
            raise TransferRefused(f"target SAE {target!r} is not served by {self._plan.id}")
        home = self._plan.sae_homes.get(initiator)
        if not order.key_ids and home is not None and home != origin:
            raise TransferRefused(f"only {home}, the home of {initiator!r}, may void all of its keys, not {origin}")
        voided = await self._store.void_for_slave(initiator, target, list(order.key_ids), path=order.path)
        self._observer.counts.keys_voided += len(voided)
        return voided

    async def _send_on(self, request: VoidRequest) -> list[str]:
        """Pass ``request`` from its sender ``path[hop]`` to the next gateway of the path."""
        next_gateway = request.path[request.hop + 1]
        if next_gateway not in self._plan.neighbours:
            raise TransferRefused(f"{next_gateway} is not a neighbour of {self._plan.id}")
        return await self._transport.send_void(next_gateway, request, timeout_s=self._hop_timeout_s)

    async def close(self) -> None:
        """Cancel the voids still running in the background."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
