"""Acks for keys another KMS handed us, delivered to its ``ack_callback_url`` or withdrawn everywhere.

The 020 server posts each asynchronous outcome once through :meth:`AckDelivery.send`. The spec
("Operation of the API") requires the acking KME to either retry a failed ``ext_keys/ack`` or void the
impacted keys in its network and send ``ext_keys/void`` to the KME that handed them over. Both, in this
order: the ack is retried with exponential backoff (``AckRetry``: from ``first_delay_s``, doubling, for at
most ``total_s`` including the attempts themselves; a 400 or 401 is final at once, since the peer would
answer a retry the same); when it still failed, every ``relayed`` key of it is voided at its target's
gateway (no SAE gets it afterwards) and ``ext_keys/void`` goes to the handing KMS, counted and logged at
WARNING. Acks of other statuses (failed, voided, ...) leave nothing deliverable: only logged.

The first attempt happens at once on the replica that received the keys; the retries survive it: they
wait in a queue in the gateway's Redis and run on whichever replica holds the ack retries' lease.

The handing KMS's 020 base URL is the callback URL up to its ``/kmapi/<version>/`` segment (the spec puts
every 020 path under it); the void is sent in the synchronous mode, so no further ack is awaited.

Acks and that void go only to the KMS that handed the keys over: ``post`` and ``peer_at`` are given its
identity (the caller's certificate) and pin the server to it (``relay.etsi020.server.callback_peer``),
so a callback URL pointing at another entity's server gets nothing; that counts as undeliverable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from relay.aio import repeat_until_cancelled
from relay.etsi020.client import Etsi020Client, PeerProblem, PeerUnreachable
from relay.etsi020.models import AckContainer, AckStatus, VoidContainer
from relay.gateway.voiding import Voiding
from relay.pool import PoolUnavailable
from relay.pool.retries import Attempt, Claimed, RetryQueue, Settled

log = logging.getLogger(__name__)

_BASE_OF_CALLBACK = re.compile(r"^(https://.+?)/kmapi/[^/]+/")
ATTEMPT_S = 10.0  # one POST at most (the 020 client's own timeout)
CLAIM_MARGIN_S = 2.0  # a claimed entry stays ours this much longer than its attempt may take
CLAIM_BATCH = 32  # acks attempted at once by one pass
RETRY_POLL_S = 0.05  # how often the lease holder looks for acks come due


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


@dataclass(frozen=True)
class AckFailure:
    reason: str
    final: bool  # a 400 or 401: a retry would be answered the same


def handing_kms_base(callback_url: str) -> str | None:
    """``https://kms.example:8443/kmapi/v1/ext_keys/ack`` -> ``https://kms.example:8443``."""
    match = _BASE_OF_CALLBACK.match(callback_url)
    return match.group(1) if match else None


class AckDelivery:
    """Posts acks once at once; failed ones go to the gateway's retry queue in Redis, shared by its replicas.

    :meth:`send` makes the first attempt on the replica that received the keys. A failure that a retry may
    cure is queued (:class:`relay.pool.retries.RetryQueue`: the ack containers, the caller and the callback
    URL, public IDs and statuses only) with the time left of ``total_s`` and the first delay.
    :meth:`run_retries` drains the queue; the gateway runs it on one replica at a time (under a lease), and
    any replica takes over when that one dies, since the queue is in Redis. Each entry is claimed before it
    is posted, for longer than a post may take (:data:`ATTEMPT_S` + :data:`CLAIM_MARGIN_S`), so no two
    replicas ever post the same ack at once, even while two of them hold the lease.
    """

    def __init__(
        self,
        post: Callable[[str, str, Sequence[AckContainer]], Awaitable[None]],
        voiding: Voiding,
        peer_at: Callable[[str, str], Etsi020Client],
        retry: AckRetry,
        metrics: AckDeliveryMetrics,
        queue: RetryQueue,
        instance: str,
    ) -> None:
        """``instance`` is this replica's token: the claimer of the queue entries it attempts."""
        self._post = post
        self._voiding = voiding
        self._peer_at = peer_at
        self._retry = retry
        self.metrics = metrics
        self._queue = queue
        self._instance = instance
        self._paused = False  # the retry queue could not be read on the last pass (logged once per outage)

    async def send(self, caller: str, callback_url: str, acks: list[AckContainer]) -> None:
        """The server's AckSender: deliver ``acks`` to ``caller``, else queue them for retries, or withdraw
        what they announce as relayed if no retry can help."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        failure = await self._attempt(caller, callback_url, acks, self._retry.total_s)
        if failure is None:
            self.metrics.delivered += 1
            return
        remaining = self._retry.total_s - (loop.time() - started)
        if failure.final or remaining <= self._retry.first_delay_s:
            await self._give_up(caller, callback_url, acks, failure.reason)
            return
        body = _encode(caller, callback_url, acks)
        try:
            await self._queue.add(body, remaining_s=remaining, first_delay_s=self._retry.first_delay_s)
        except PoolUnavailable as exc:
            await self._give_up(caller, callback_url, acks, f"{failure.reason}; not queued for retries: {exc}")

    async def run_retries(self) -> None:
        """Retry queued acks as they come due, forever; cancel the task to stop."""
        await repeat_until_cancelled(self.retry_due, RETRY_POLL_S)

    async def retry_due(self) -> None:
        """One pass over the queue: claim the acks due now and attempt each (at once, not one after another)."""
        try:
            claimed = await self._queue.claim(self._instance, ATTEMPT_S + CLAIM_MARGIN_S, CLAIM_BATCH)
        except PoolUnavailable as exc:
            if not self._paused:
                log.warning("020 ack retries paused: %s", exc)
            self._paused = True
            return
        if self._paused:
            log.info("020 ack retries resumed")
        self._paused = False
        await asyncio.gather(*(self._retry_one(entry) for entry in claimed))

    async def _retry_one(self, entry: Claimed) -> None:
        caller, callback_url, acks = _decode(entry.body)
        failure: AckFailure | None = AckFailure("no retry left within the retry time", final=False)
        if entry.remaining_s > 0:
            failure = await self._attempt(caller, callback_url, acks, entry.remaining_s)
        attempt = Attempt.DONE if failure is None else Attempt.DROP if failure.final else Attempt.AGAIN
        try:
            settled = await self._queue.settle(self._instance, entry.entry_id, attempt)
        except PoolUnavailable as exc:  # the claim runs out and the entry comes due again (a repeated ack is
            log.warning("020 ack to %s not settled, retried later: %s", callback_url, exc)  # accepted as the first)
            return
        if failure is None:
            self.metrics.delivered += 1
        elif settled in (Settled.EXHAUSTED, Settled.REMOVED):
            await self._give_up(caller, callback_url, acks, failure.reason)

    async def _attempt(
        self, caller: str, callback_url: str, acks: Sequence[AckContainer], time_left_s: float
    ) -> AckFailure | None:
        """One POST, within the time left and at most :data:`ATTEMPT_S`; None once delivered."""
        self.metrics.attempts += 1
        try:
            async with asyncio.timeout(max(min(time_left_s, ATTEMPT_S), 0.001)):
                await self._post(caller, callback_url, acks)
            return None
        except PeerProblem as exc:
            return AckFailure(str(exc), final=exc.status in (400, 401))  # the peer would answer a retry the same
        except (PeerUnreachable, TimeoutError) as exc:
            return AckFailure(str(exc) or "no answer within the retry time", final=False)

    async def _give_up(self, caller: str, callback_url: str, acks: Sequence[AckContainer], failure: str) -> None:
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


def _encode(caller: str, callback_url: str, acks: Sequence[AckContainer]) -> bytes:
    return json.dumps({"caller": caller, "callback_url": callback_url, "acks": [a.to_json() for a in acks]}).encode()


def _decode(body: bytes) -> tuple[str, str, list[AckContainer]]:
    """What :func:`_encode` wrote (this gateway's own Redis entry, so its schema is trusted)."""
    data = json.loads(body)
    return data["caller"], data["callback_url"], [AckContainer.codec().parse(ack) for ack in data["acks"]]
