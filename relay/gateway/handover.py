"""Handing keys to another ETSI 020 KMS and collecting its acks, with the state in Redis.

``ext_keys`` goes out in the asynchronous mode with our own ack callback (the acks arrive at our 020
listener, :meth:`relay.gateway.interkms.InterKmsBridge.acknowledged`, in whichever process of the gateway),
or in the synchronous mode, where the answer carries them. Either way the acks are settled in the
:class:`relay.pool.HandoverLedger`: the first ack of a key sets its status, a repeated or late one
changes nothing. What the peer did not ack within the time given is abandoned and voided at the peer with
``ext_keys/void`` (synchronous), as the spec requires of a sender that cannot tell whether the association
exists. Only a 400 or 401 tells it does not: then nothing is voided and the error is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from relay.domain import Key
from relay.etsi020.client import Etsi020Client, PeerProblem, PeerUnreachable
from relay.etsi020.models import AckStatus, ExtKey, ExtKeyContainer, VoidContainer
from relay.pool import HandoverLedger

log = logging.getLogger(__name__)

ACK_PATH = "/kmapi/v1/ext_keys/ack"
DEFAULT_ACK_TIMEOUT_S = 30.0
ACK_POLL_S = 0.2  # how often a hand-over looks for acks another process of the gateway received


@dataclass(frozen=True)
class HandoverResult:
    statuses: dict[str, AckStatus]  # per key_ID; keys the peer never acked are voided and absent here


class AckSignal:
    """Wakes this process's hand-overs when an ack arrived (those of other processes are polled)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def arrived(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    def current(self) -> asyncio.Event:
        """Taken before reading the ledger, so an ack recorded between the read and the wait still wakes."""
        return self._event


class Handover:
    def __init__(self, ledger: HandoverLedger, signal: AckSignal, *, own_url: str) -> None:
        self._ledger = ledger
        self._signal = signal
        self._callback_url = own_url.rstrip("/") + ACK_PATH

    async def hand_over(
        self,
        peer: Etsi020Client,
        peer_id: str,
        initiator: str,
        target: str,
        keys: Sequence[Key],
        *,
        timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
        synchronous: bool = False,
    ) -> HandoverResult:
        """Give ``keys`` to the KMS ``peer_id`` for ``target``; returns each key's ack status within
        ``timeout_s``. An answer other than 202 (or 200 with the acks) ends the wait at once."""
        key_ids = [key.key_id for key in keys]
        await self._ledger.expect_acks(peer_id, key_ids)
        request = ExtKeyContainer(
            tuple(ExtKey(key.key_id, key.key) for key in keys),
            initiator,
            (target,),
            ack_callback_url=None if synchronous else self._callback_url,
        )
        wait_s = timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                acks = await peer.ext_keys(request)
            if acks is not None:  # synchronous: settled like acks POSTed to our callback
                await self._ledger.record_acks(peer_id, [(k, str(a.ack_status)) for a in acks for k in a.key_ids])
                wait_s = 0
        except PeerProblem as exc:
            if exc.status in (400, 401):  # the peer kept no association: nothing to void
                await self._ledger.forget(peer_id, key_ids)
                raise
            log.warning("020 hand-over to %s answered %d: voiding %d keys", peer_id, exc.status, len(key_ids))
            wait_s = 0
        except (PeerUnreachable, TimeoutError) as exc:
            log.warning("020 hand-over to %s got no answer (%s): voiding %d keys", peer_id, exc, len(key_ids))
            wait_s = 0
        statuses = await self._acks_of(peer_id, key_ids, wait_s)
        unacked = await self._ledger.abandon(peer_id, [key_id for key_id in key_ids if key_id not in statuses])
        statuses |= await self._ledger.acked(peer_id, [key_id for key_id in key_ids if key_id not in unacked])
        if unacked:
            await self.void_at(peer, peer_id, initiator, target, unacked)
        return HandoverResult({key_id: AckStatus(status) for key_id, status in statuses.items()})

    @staticmethod
    async def void_at(peer: Etsi020Client, peer_id: str, initiator: str, target: str, key_ids: Sequence[str]) -> bool:
        """``ext_keys/void`` at the peer (synchronous); False, logged, when it could not be sent."""
        try:
            await peer.void(VoidContainer(tuple(key_ids), initiator, (target,)))
        except (PeerProblem, PeerUnreachable) as exc:
            log.warning("could not void %d keys at %s: %s", len(key_ids), peer_id, exc)
            return False
        return True

    async def _acks_of(self, peer_id: str, key_ids: Sequence[str], timeout_s: float) -> dict[str, str]:
        """The acks recorded for ``key_ids`` once all arrived or ``timeout_s`` passed, by whichever process
        of the gateway received them (woken at once by this process's, polling for the others')."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            arrived = self._signal.current()
            statuses = await self._ledger.acked(peer_id, key_ids)
            remaining = deadline - loop.time()
            if len(statuses) == len(key_ids) or remaining <= 0:
                return statuses
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), min(ACK_POLL_S, remaining))
