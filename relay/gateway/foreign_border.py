"""The bordering gateway's part of a relay to an SAE of a foreign KMS domain: the last hop is ETSI 020.

A key for a foreign SAE is relayed hop by hop like any other to the gateway bordering that domain (the
topology's ``foreign_kms``), which hands it over with ``ext_keys`` (:class:`relay.gateway.handover.Handover`)
instead of storing it. The hop is confirmed, so the master gets the key, only once the foreign KMS acked
it ``relayed`` within ``deadline_s`` (capped by the time the hop's sender still waits). A ``failed`` ack,
no ack in time, an error answer or no answer at all voids the key at the foreign KMS (``ext_keys/void``)
and fails the relay; nothing of it is stored in our network, so nothing else is left to void.

A void for a foreign SAE (the relay failed behind the border's answer, or the master went away before it
got the key) travels to the border like any void and goes on from there with ``ext_keys/void``, once it
is verified as the last gateway of a path verifies any void (:mod:`relay.gateway.voiding`): signed by the
path's origin, fresh and not replayed, naming its key_IDs (a void of "all" would reach keys already
released to their master), and issued by the home gateway of the initiator, the only gateway that relays
keys for that SAE (a neighbour cannot void keys another gateway's master holds).

The synchronous mode is used only when asked for and the foreign KMS's ``versions`` lists the
``synchronous_mode`` capability (asked once per domain); otherwise acks arrive at our ack callback.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from relay.domain import Key
from relay.etsi020.client import Etsi020Client, PeerProblem, PeerUnreachable
from relay.etsi020.models import SYNCHRONOUS_MODE, AckStatus
from relay.gateway.errors import RelayFailed, TransferRefused
from relay.gateway.handover import Handover
from relay.gateway.hop_protection import HopCrypto
from relay.gateway.hops import VoidHandler, VoidRequest
from relay.topology import ForeignKms

log = logging.getLogger(__name__)


class ForeignBorder:
    def __init__(
        self,
        handover: Handover,
        clients: Mapping[str, Etsi020Client],
        domains: Mapping[str, ForeignKms],
        voids: VoidHandler,
        crypto: HopCrypto,
        sae_homes: Mapping[str, str],
        *,
        own_id: str,
        neighbours: Collection[str],
        deadline_s: float,
        prefer_synchronous: bool = False,
        outcomes: Counter[tuple[str, str]] | None = None,
    ) -> None:
        """``clients``: an 020 client per bordered domain ID; ``domains``: each foreign SAE's domain;
        ``voids``: the ordinary handler of voids from neighbours, for every void not bound across the border;
        ``crypto``: to verify those that are; ``sae_homes``: our SAEs' gateways (a void's origin must be one)."""
        self._handover = handover
        self._voids = voids
        self._crypto = crypto
        self._sae_homes = sae_homes
        self._own = own_id
        self._neighbours = frozenset(neighbours)
        self._background: set[asyncio.Task[list[str]]] = set()
        self._clients = clients
        self._domains = domains
        self.deadline_s = deadline_s
        self._prefer_synchronous = prefer_synchronous
        self._synchronous: dict[str, bool] = {}
        self.outcomes = Counter[tuple[str, str]]() if outcomes is None else outcomes  # (domain, outcome): a metric

    def borders(self, sae_id: str) -> bool:
        domain = self._domains.get(sae_id)
        return domain is not None and domain.id in self._clients

    async def hand_over(self, initiator: str, target: str, key: Key, budget_s: float) -> None:
        """Returns once the foreign KMS acked ``key`` relayed; else it is voided there and RelayFailed raised."""
        domain = self._domain(target)
        client = self._clients[domain.id]
        timeout_s = min(self.deadline_s, budget_s)
        try:
            result = await self._handover.hand_over(
                client,
                domain.identity,
                initiator,
                target,
                [key],
                timeout_s=timeout_s,
                synchronous=await self._synchronous_with(domain, client),
            )
        except PeerProblem as exc:  # 400 or 401: refused outright, nothing associated there
            self.outcomes[domain.id, "refused"] += 1
            raise RelayFailed(f"{domain.id} refused the key: {exc.status}", retryable=False) from None
        status = result.statuses.get(key.key_id)
        if status is AckStatus.RELAYED:
            self.outcomes[domain.id, "relayed"] += 1
            return
        if status is not None:  # acked, but not relayed: make sure it is gone there too
            self.outcomes[domain.id, "acked_not_relayed"] += 1
            await self._handover.void_at(client, domain.identity, initiator, target, [key.key_id])
            raise RelayFailed(f"{domain.id} acked the key {status}", retryable=False)
        self.outcomes[domain.id, "no_ack_in_time"] += 1
        raise RelayFailed(
            f"{domain.id} did not ack the key within {timeout_s:.1f} s (down, error or late)", retryable=False
        )

    async def void(self, initiator: str, target: str, key_ids: Sequence[str]) -> list[str]:
        """Void keys handed over to ``target``'s domain (e.g. the master went away before it got them);
        returns the key_IDs the void was carried to the foreign KMS for, ``[]`` if it could not be sent."""
        domain = self._domain(target)
        sent = await self._handover.void_at(self._clients[domain.id], domain.identity, initiator, target, key_ids)
        self.outcomes[domain.id, "void_sent" if sent else "void_unsent"] += 1
        return list(key_ids) if sent else []

    def void_later(self, initiator: str, target: str, key_ids: Sequence[str]) -> None:
        """:meth:`void` in the background, for an answer that must not wait for it."""
        task = asyncio.create_task(self.void(initiator, target, key_ids))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def receive_void(self, request: VoidRequest, sender: str) -> list[str]:
        """The gRPC void handler: a void whose path ends here for a foreign SAE goes on over 020; any
        other is the ordinary void's (:class:`relay.gateway.voiding.Voiding`)."""
        path, hop, target = request.path, request.hop, request.target_sae_ids
        last_hop = len(path) >= 2 and hop == len(path) - 2 and path[-1] == self._own
        if last_hop and len(target) == 1 and self.borders(target[0]):
            if path[hop] != sender or sender not in self._neighbours:
                raise TransferRefused(f"void hop {hop} of {list(path)} is not from {sender} to {self._own}")
            order = request.order()
            if not order.key_ids:
                raise TransferRefused("a void across the border names its key_IDs")
            home = self._sae_homes.get(order.initiator_sae_id)
            if home != order.origin:
                raise TransferRefused(f"only {home}, the home of {order.initiator_sae_id!r}, voids its keys")
            await self._crypto.verify_void(order, request.signature)
            return await self.void(order.initiator_sae_id, target[0], order.key_ids)
        return await self._voids.receive_void(request, sender)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _domain(self, target: str) -> ForeignKms:
        domain = self._domains.get(target)
        if domain is None or domain.id not in self._clients:
            raise RelayFailed(f"{target} is not an SAE of a KMS domain this gateway borders", retryable=False)
        return domain

    async def _synchronous_with(self, domain: ForeignKms, client: Etsi020Client) -> bool:
        if not self._prefer_synchronous:
            return False
        if domain.id not in self._synchronous:
            try:
                versions = await client.versions()
            except (PeerProblem, PeerUnreachable) as exc:
                log.warning("versions of %s unavailable (%s): asynchronous mode", domain.id, exc)
                return False
            self._synchronous[domain.id] = SYNCHRONOUS_MODE in versions.capabilities
        return self._synchronous[domain.id]
