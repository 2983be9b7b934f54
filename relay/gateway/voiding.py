"""Withdrawing relayed keys that must never be delivered: the undo of a relay that did not complete.

A void travels the key's path like a hop and removes the keys the target's gateway holds for the SAE
pair. It is best effort by design: a key that cannot be voided (its path is failing) still expires, and
a key already delivered is reported as not voided. The SAE's answer never waits for a void
(:meth:`Voiding.void_later`), since the path that made the relay fail is likely failing still.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from relay.gateway.config import GatewayPlan
from relay.gateway.errors import RelayFailed, TransferRefused
from relay.gateway.hops import HopTransport, VoidRequest
from relay.gateway.relay_events import RelayObserver
from relay.gateway.routing import Router
from relay.pool import RelayedKeyStore

log = logging.getLogger(__name__)


class Voiding:
    def __init__(
        self,
        plan: GatewayPlan,
        router: Router,
        store: RelayedKeyStore,
        transport: HopTransport,
        observer: RelayObserver,
        *,
        hop_timeout_s: float,
    ) -> None:
        self._plan = plan
        self._router = router
        self._store = store
        self._transport = transport
        self._observer = observer
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
        """Withdraw keys waiting for ``target`` at its gateway; returns the key_IDs voided (best effort)."""
        if path is None:
            try:
                path = self._router.route_to(self._router.home_of(target)).gateways  # just us for a local target
            except RelayFailed as exc:
                log.warning("cannot void %d keys for %s: %s", len(key_ids), target, exc)
                return []
        request = VoidRequest(tuple(key_ids), initiator, (target,), tuple(path), hop=0)
        return await self._void_from(request, 0)

    async def receive_void(self, request: VoidRequest, sender: str) -> list[str]:
        """A void from neighbour ``sender``: carry it on, or void here if this gateway is the last."""
        path, hop, own = request.path, request.hop, self._plan.id
        if not 0 <= hop < len(path) - 1 or path[hop] != sender or path[hop + 1] != own:
            raise TransferRefused(f"void hop {hop} of {list(path)} is not from {sender} to {own}")
        if len(request.target_sae_ids) != 1:
            raise TransferRefused("a void names exactly one target SAE")
        return await self._void_from(request, hop + 1)

    async def _void_from(self, request: VoidRequest, position: int) -> list[str]:
        """Void ``request`` as the gateway at ``path[position]``."""
        path, target = request.path, request.target_sae_ids[0]
        if position == len(path) - 1:
            if self._plan.sae_homes.get(target) != self._plan.id:
                raise TransferRefused(f"target SAE {target!r} is not served by {self._plan.id}")
            voided = await self._store.void_for_slave(request.initiator_sae_id, target, list(request.key_ids))
            self._observer.counts.keys_voided += len(voided)
            return voided
        next_gateway = path[position + 1]
        if next_gateway not in self._plan.neighbours:
            raise TransferRefused(f"{next_gateway} is not a neighbour of {self._plan.id}")
        forwarded = VoidRequest(request.key_ids, request.initiator_sae_id, request.target_sae_ids, path, position)
        return await self._transport.send_void(next_gateway, forwarded, timeout_s=self._hop_timeout_s)

    async def close(self) -> None:
        """Cancel the voids still running in the background."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
