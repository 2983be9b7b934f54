"""A KMS domain run by "another vendor": the simulator with an ETSI GS QKD 020 face, written from the spec.

It serves its own SAEs over 014 and speaks 020 to the one gateway of ours that borders it (the
topology's ``foreign_kms`` entry), in both directions:

* **Keys handed to it** (``POST ext_keys`` from the border): for one of its SAEs, refused at once when
  they cannot be taken (401 another caller, 400 an unknown target or a key_ID seen before, 503 several
  targets), otherwise stored for the target SAE, which fetches them by key_ID with 014 ``dec_keys``; acked
  ``relayed`` in the synchronous mode or POSTed to the ``ack_callback_url``. ``ext_keys/void`` withdraws
  keys not yet delivered (``voided``), reports delivered ones (``failed to void``) and unknown ones
  (``key not present``); a voided key_ID is remembered, so keys whose ``ext_keys`` is still being
  processed when the void comes are never stored afterwards.
* **Keys it hands over** (its SAE's 014 ``enc_keys`` naming one of our SAEs): fresh keys POSTed to the
  border with ``ext_keys`` in the asynchronous mode, with its own ack callback; the SAE gets them only
  once every key was acked ``relayed`` within ``ack_deadline_s``. Otherwise the SAE gets 503 and
  whatever was not refused outright is voided at the border. Acks are idempotent: a repeated ack gets 200,
  a key_ID it never handed over 400 ``key not present``.

A test instrument can make it misbehave (:class:`Behaviour`, the admin listener's ``/admin/handover``):
refuse with 503, ack ``failed``, answer late, ack twice. State lives in memory (a simulator); every
change happens without an ``await`` in between, so the loop makes each one atomic.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from relay.domain import Key, new_key_id
from relay.etsi014.errors import UnauthorizedError, UnavailableError, ValidationError
from relay.etsi014.models import KeyContainer, KeyIds, KeyRequest, Status
from relay.etsi014.server import ReservedKeys
from relay.etsi020.client import Etsi020Client, PeerProblem, PeerUnreachable
from relay.etsi020.models import AckContainer, AckStatus, ExtKey, ExtKeyContainer, VoidContainer
from relay.etsi020.problems import (
    INVALID_PARAMETER,
    KEY_NOT_PRESENT,
    KEY_ROUTING_ERROR,
    SERVER_SIDE_ERROR,
    UNAUTHORIZED,
    Problem,
)
from relay.kms_sim.kms import SimulatedKms
from relay.topology import ForeignKms, Topology

log = logging.getLogger(__name__)

ACK_PATH = "/kmapi/v1/ext_keys/ack"
DEFAULT_ACK_DEADLINE_S = 5.0


class Behaviour(StrEnum):
    """How the stand-in answers the keys the border hands it (tests switch it at the admin listener)."""

    NORMAL = "normal"  # store and ack relayed
    UNAVAILABLE = "unavailable"  # ext_keys answers 503 before anything is associated
    FAIL = "fail"  # store nothing, ack failed
    SLOW = "slow"  # take delay_s before storing and acking (past the border's deadline, it is voided first)
    DUPLICATE = "duplicate"  # store, and post the asynchronous ack twice


@dataclass
class HandoverControls:
    behaviour: Behaviour = Behaviour.NORMAL
    delay_s: float = 0.0
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("received", "stored", "voided", "acks_sent", "acks_received"), 0)
    )


class ForeignDomain:
    """The 020 backend (:class:`relay.etsi020.server.InterKmsBackend`) and the 014 backend of its SAEs.

    ``border`` is its 020 client to the bordering gateway (ext_keys, void, and acks to the callback URL
    the gateway gives, which is its own 020 listener)."""

    def __init__(
        self,
        kms: SimulatedKms,
        domain: ForeignKms,
        topology: Topology,
        border: Etsi020Client,
        *,
        ack_deadline_s: float = DEFAULT_ACK_DEADLINE_S,
    ) -> None:
        self.kms = kms
        self.domain = domain
        self.controls = HandoverControls()
        self._our_saes = {sae.id for sae in topology.saes}  # the SAEs across the border
        self._border = border
        self._ack_deadline_s = ack_deadline_s
        self._callback_url = f"https://{domain.host}:{domain.etsi020_port}{ACK_PATH}"
        self._received: set[str] = set()  # key_IDs handed to us and stored (void: failed to void once gone)
        self._voided: set[str] = set()  # key_IDs voided before they were stored: never stored afterwards
        self._handed_over: dict[str, AckStatus | None] = {}  # our keys at the border: None until acked
        self._ack_arrived = asyncio.Event()

    # ----- 020: keys handed to us ---------------------------------------------------------------------

    def _check_caller(self, caller: str) -> None:
        if caller != self.domain.border:
            raise Problem(401, UNAUTHORIZED, {"unauthorized": f"{caller} is not the gateway bordering this KMS"})

    async def check_ext_keys(self, caller: str, request: ExtKeyContainer) -> None:
        self._check_caller(caller)
        if self.controls.behaviour is Behaviour.UNAVAILABLE:
            raise Problem(503, SERVER_SIDE_ERROR, {"server_side_general_error": "KMS unavailable (simulated)"})
        if len(request.target_sae_ids) != 1:
            raise Problem(503, KEY_ROUTING_ERROR, {"no_route_multiple_targets": "one target SAE per request"})
        if request.target_sae_ids[0] not in self.domain.saes:
            raise Problem(400, KEY_ROUTING_ERROR, {"target_sae_id_not_recognized": request.target_sae_ids[0]})
        seen = [key.key_id for key in request.keys if key.key_id in self._received | self._voided]
        if seen or len({key.key_id for key in request.keys}) != len(request.keys):
            raise Problem(400, INVALID_PARAMETER, {"key_id": "a key_id was used before or appears twice"})

    async def deliver(self, caller: str, request: ExtKeyContainer) -> list[AckContainer]:
        self.controls.counts["received"] += len(request.keys)
        initiator, targets = request.initiator_sae_id, request.target_sae_ids
        if self.controls.behaviour is Behaviour.SLOW:
            await asyncio.sleep(self.controls.delay_s)
        if self.controls.behaviour is Behaviour.FAIL:
            key_ids = tuple(key.key_id for key in request.keys)
            return [AckContainer(key_ids, AckStatus.FAILED, initiator, targets, message="refused (simulated)")]
        voided = tuple(key.key_id for key in request.keys if key.key_id in self._voided)
        keep = [Key(key.key_id, key.value) for key in request.keys if key.key_id not in self._voided]
        self.kms.accept(initiator, targets[0], keep)
        self._received.update(key.key_id for key in keep)
        self.controls.counts["stored"] += len(keep)
        acks = []
        if keep:
            acks.append(AckContainer(tuple(key.key_id for key in keep), AckStatus.RELAYED, initiator, targets))
        if voided:
            acks.append(AckContainer(voided, AckStatus.FAILED, initiator, targets, message="voided meanwhile"))
        return acks

    async def send_acks(self, caller: str, callback_url: str, acks: list[AckContainer]) -> None:
        """The server's AckSender: once, or twice when playing a KMS that repeats its acks. ``caller`` was
        checked to be the border gateway before the request was accepted, and the client is pinned to that
        gateway's certificate, so acks reach no other server."""
        times = 2 if self.controls.behaviour is Behaviour.DUPLICATE else 1
        for _ in range(times):
            try:
                await self._border.post_acks(callback_url, acks)
                self.controls.counts["acks_sent"] += 1
            except (PeerProblem, PeerUnreachable) as exc:
                log.warning("ack to %s failed: %s", callback_url, exc)

    async def check_void(self, caller: str, request: VoidContainer) -> None:
        self._check_caller(caller)
        if len(request.target_sae_ids) != 1 or request.target_sae_ids[0] not in self.domain.saes:
            raise Problem(400, KEY_ROUTING_ERROR, {"target_sae_id_not_recognized": ",".join(request.target_sae_ids)})

    async def void(self, caller: str, request: VoidContainer) -> list[AckContainer]:
        initiator, targets = request.initiator_sae_id, request.target_sae_ids
        key_ids = list(request.key_ids) or sorted(self._received)
        voided = self.kms.withdraw(initiator, targets[0], key_ids)
        self.controls.counts["voided"] += len(voided)
        gone = [k for k in key_ids if k not in voided and k in self._received]
        absent = [k for k in key_ids if k not in voided and k not in self._received]
        self._voided.update(absent)  # an ext_keys still in progress must not store them later
        outcomes = (
            (AckStatus.VOIDED, voided, None),
            (AckStatus.FAILED_TO_VOID, gone, "already delivered or expired"),
            (AckStatus.KEY_NOT_PRESENT, absent, "never handed over"),
        )
        return [
            AckContainer(tuple(ids), status, initiator, targets, message=message)
            for status, ids, message in outcomes
            if ids
        ]

    async def acknowledged(self, caller: str, acks: Sequence[AckContainer]) -> None:
        self._check_caller(caller)
        statuses = [(key_id, ack.ack_status) for ack in acks for key_id in ack.key_ids]
        unknown = [key_id for key_id, _ in statuses if key_id not in self._handed_over]
        if unknown:
            raise Problem(400, KEY_NOT_PRESENT, {"key_not_present": ", ".join(unknown)[:1024]})
        self.controls.counts["acks_received"] += 1
        for key_id, status in statuses:
            if self._handed_over[key_id] is None:  # the first ack decides; a repeated one changes nothing
                self._handed_over[key_id] = status
        arrived, self._ack_arrived = self._ack_arrived, asyncio.Event()
        arrived.set()

    # ----- 014 for our own SAEs --------------------------------------------------------------------------

    def _check_own(self, sae_id: str) -> None:
        if sae_id not in self.domain.saes:
            raise UnauthorizedError(f"SAE {sae_id} is not registered at {self.domain.id}")

    def _check_across(self, sae_id: str) -> None:
        if sae_id not in self._our_saes:
            raise ValidationError(f"SAE {sae_id} is not reachable from {self.domain.id}")

    async def status(self, master_sae_id: str, slave_sae_id: str) -> Status:
        self._check_own(master_sae_id)
        self._check_across(slave_sae_id)
        limits = self.kms.limits
        return Status(
            source_kme_id=self.domain.identity,
            target_kme_id=self.domain.border,
            master_sae_id=master_sae_id,
            slave_sae_id=slave_sae_id,
            key_size=limits.key_size,
            stored_key_count=self.kms.config.settings.max_key_count,  # keys are drawn on demand
            max_key_count=self.kms.config.settings.max_key_count,
            max_key_per_request=limits.max_key_per_request,
            max_key_size=limits.max_key_size,
            min_key_size=limits.min_key_size,
            max_sae_id_count=0,
        )

    async def enc_keys(self, master_sae_id: str, slave_sae_id: str, request: KeyRequest) -> KeyContainer:
        self._check_own(master_sae_id)
        self._check_across(slave_sae_id)
        number, size = self.kms.limits.resolve(request, master_sae_id, slave_sae_id)
        keys = tuple(Key(new_key_id(), os.urandom(size // 8)) for _ in range(number))
        await self._hand_over(master_sae_id, slave_sae_id, keys)
        return KeyContainer(keys)

    async def enc_keys_abandoned(self, master_sae_id: str, slave_sae_id: str, container: KeyContainer) -> None:
        """Its SAE left before the answer: the keys already handed over are voided at the border."""
        await self._void_at_border(master_sae_id, slave_sae_id, [key.key_id for key in container.keys])

    async def dec_keys(self, slave_sae_id: str, master_sae_id: str, key_ids: KeyIds) -> ReservedKeys:
        self._check_own(slave_sae_id)
        return self.kms.redeem(slave_sae_id, master_sae_id, key_ids)

    async def _hand_over(self, initiator: str, target: str, keys: Sequence[Key]) -> None:
        """ext_keys to the border, asynchronous; returns once every key was acked relayed, else 503."""
        key_ids = [key.key_id for key in keys]
        self._handed_over.update(dict.fromkeys(key_ids))
        request = ExtKeyContainer(
            tuple(ExtKey(key.key_id, key.key) for key in keys),
            initiator,
            (target,),
            ack_callback_url=self._callback_url,
        )
        answered = True
        try:
            await self._border.ext_keys(request)
        except PeerProblem as exc:
            if exc.status in (400, 401):  # refused outright: the border kept no association
                raise UnavailableError(f"the border gateway refused the keys: {exc}") from None
            answered = False
        except PeerUnreachable:
            answered = False  # it may have the keys: no ack will come, void them
        statuses = await self._acks_of(key_ids) if answered else {}
        if all(statuses.get(key_id) is AckStatus.RELAYED for key_id in key_ids):
            return
        with_no_relayed_ack = tuple(key_id for key_id in key_ids if statuses.get(key_id) is not AckStatus.RELAYED)
        await self._void_at_border(initiator, target, key_ids)
        raise UnavailableError(f"{len(with_no_relayed_ack)} keys not relayed by {self.domain.border} in time")

    async def _void_at_border(self, initiator: str, target: str, key_ids: Sequence[str]) -> None:
        """All or nothing: every key of an answer the SAE did not get is voided, relayed ones included."""
        try:
            await self._border.void(VoidContainer(tuple(key_ids), initiator, (target,)))
        except (PeerProblem, PeerUnreachable) as exc:
            log.warning("could not void %d keys at %s: %s", len(key_ids), self.domain.border, exc)

    async def _acks_of(self, key_ids: Sequence[str]) -> dict[str, AckStatus]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ack_deadline_s
        while True:
            arrived = self._ack_arrived
            statuses = {k: s for k in key_ids if (s := self._handed_over.get(k)) is not None}
            remaining = deadline - loop.time()
            if len(statuses) == len(key_ids) or remaining <= 0:
                return statuses
            try:
                await asyncio.wait_for(arrived.wait(), remaining)
            except TimeoutError:
                pass
