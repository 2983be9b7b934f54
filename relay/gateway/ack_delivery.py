"""Acks for keys another KMS handed us, delivered to its ``ack_callback_url`` or withdrawn everywhere.

The 020 server posts each asynchronous outcome once through :meth:`AckDelivery.send`. The spec
("Operation of the API") requires the acking KME to either retry a failed ``ext_keys/ack`` or void the
impacted keys in its network and send ``ext_keys/void`` to the KME that handed them over. Both, in this
order: the ack is retried with exponential backoff (``AckRetry``: from ``first_delay_s``, doubling, for at
most ``total_s`` including the attempts themselves; a 400 or 401 is final at once, since the peer would
answer a retry the same); when it still failed, every ``relayed`` key of it is voided at its target's
gateway (no SAE gets it afterwards) and ``ext_keys/void`` goes to the handing KMS, counted and logged at
WARNING. Acks of other statuses (failed, voided, ...) leave nothing deliverable: only logged.

The handing KMS's 020 base URL is the callback URL up to its ``/kmapi/<version>/`` segment (the spec puts
every 020 path under it); the void is sent in the synchronous mode, so no further ack is awaited.

Acks and that void go only to the KMS that handed the keys over: ``post`` and ``peer_at`` are given its
identity (the caller's certificate) and pin the server to it (``relay.etsi020.server.callback_peer``),
so a callback URL pointing at another entity's server gets nothing; that counts as undeliverable.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from relay.etsi020.client import Etsi020Client, PeerProblem, PeerUnreachable
from relay.etsi020.models import AckContainer, AckStatus, VoidContainer
from relay.gateway.voiding import Voiding

log = logging.getLogger(__name__)

_BASE_OF_CALLBACK = re.compile(r"^(https://.+?)/kmapi/[^/]+/")


@dataclass(frozen=True)
class AckRetry:
    total_s: float = 30.0
    first_delay_s: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.first_delay_s <= self.total_s:
            raise ValueError("the first ack retry delay must be positive and within the total retry time")


@dataclass
class AckDeliveryMetrics:
    attempts: int = 0  # POSTs to a callback, retries included
    delivered: int = 0  # ack requests answered 200
    undeliverable: int = 0  # ack requests given up
    keys_voided: int = 0  # relayed keys withdrawn because their ack could not be delivered


def handing_kms_base(callback_url: str) -> str | None:
    """``https://kms.example:8443/kmapi/v1/ext_keys/ack`` -> ``https://kms.example:8443``."""
    match = _BASE_OF_CALLBACK.match(callback_url)
    return match.group(1) if match else None


class AckDelivery:
    def __init__(
        self,
        post: Callable[[str, str, Sequence[AckContainer]], Awaitable[None]],
        voiding: Voiding,
        peer_at: Callable[[str, str], Etsi020Client],
        retry: AckRetry,
        metrics: AckDeliveryMetrics,
    ) -> None:
        self._post = post
        self._voiding = voiding
        self._peer_at = peer_at
        self._retry = retry
        self.metrics = metrics

    async def send(self, caller: str, callback_url: str, acks: list[AckContainer]) -> None:
        """The server's AckSender: deliver ``acks`` to ``caller``, or withdraw what they announce as relayed."""
        failure = await self._deliver(caller, callback_url, acks)
        if failure is None:
            self.metrics.delivered += 1
            return
        self.metrics.undeliverable += 1
        relayed = [ack for ack in acks if ack.ack_status is AckStatus.RELAYED and ack.key_ids]
        log.warning(
            "020 ack to %s undeliverable (%s): voiding %d relayed keys",
            callback_url,
            failure,
            sum(len(ack.key_ids) for ack in relayed),
        )
        for ack in relayed:
            await self._withdraw(caller, callback_url, ack)

    async def _deliver(self, caller: str, callback_url: str, acks: list[AckContainer]) -> str | None:
        """None once delivered, else the last failure after the retry time ran out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry.total_s
        delay = self._retry.first_delay_s
        while True:
            self.metrics.attempts += 1
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.001)):
                    await self._post(caller, callback_url, acks)
                return None
            except PeerProblem as exc:
                failure = str(exc)
                if exc.status in (400, 401):
                    return failure
            except (PeerUnreachable, TimeoutError) as exc:
                failure = str(exc) or "no answer within the retry time"
            if loop.time() + delay >= deadline:
                return failure
            await asyncio.sleep(delay)
            delay *= 2

    async def _withdraw(self, caller: str, callback_url: str, ack: AckContainer) -> None:
        target = ack.target_sae_ids[0]
        voided = await self._voiding.void(ack.initiator_sae_id, target, list(ack.key_ids))
        self.metrics.keys_voided += len(voided)
        base = handing_kms_base(callback_url)
        if base is None:
            log.warning("no 020 base URL in %s: %d keys voided here only", callback_url, len(voided))
            return
        request = VoidContainer(ack.key_ids, ack.initiator_sae_id, ack.target_sae_ids)
        try:
            async with self._peer_at(caller, base) as peer:
                await peer.void(request)
        except (PeerProblem, PeerUnreachable) as exc:
            log.warning("ext_keys/void of %d keys at %s failed: %s", len(ack.key_ids), base, exc)
