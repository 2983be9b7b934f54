"""ETSI GS QKD 020 at the domain border: keys another KMS hands us are relayed to their target SAE, and
keys we hand to another 020 KMS are tracked until its acks arrive.

Receiving (:class:`InterKmsBridge` as the server's backend): what can be refused at once is refused
before 202 and leaves nothing behind (unknown target SAE: 400; several targets or no route: 503); each
key then travels the hop-by-hop relay with its key_ID preserved, so the target SAE asks its gateway for
exactly the key_ID the initiator SAE was given. Each key is acked ``relayed`` only once stored at the
target's gateway, or ``failed`` (and voided) otherwise.

Handing over is :mod:`relay.gateway.handover`; its acks arrive here (:meth:`InterKmsBridge.acknowledged`)
and wake the hand-overs waiting for them.

State lives in Redis (:class:`relay.pool.HandoverLedger`), never in this object: an ack or void is
answered the same by every process of the gateway and after a restart. A repeated ack (the peer lost our
200) is answered 200 again; only key_IDs never handed to that peer are ``key not present``. A void answers
``voided`` for what it withdrew, ``failed to void`` for keys handed to us but already delivered, voided or
expired, and ``key not present`` for key_IDs never handed to us for that SAE pair.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from relay.domain import Key
from relay.etsi020.models import MAX_KEY_BYTES, AckContainer, AckStatus, ExtKey, ExtKeyContainer, VoidContainer
from relay.etsi020.problems import (
    INSUFFICIENT_KEY_MATERIAL,
    INVALID_PARAMETER,
    KEY_NOT_PRESENT,
    KEY_ROUTING_ERROR,
    SERVER_SIDE_ERROR,
    UNAUTHORIZED,
    Problem,
)
from relay.gateway.config import GatewayPlan
from relay.gateway.errors import RelayFailed
from relay.gateway.fair_share import OverShare
from relay.gateway.handover import AckSignal
from relay.gateway.relay_engine import RelayEngine
from relay.gateway.routing import Router
from relay.gateway.voiding import Voiding
from relay.pool import HandoverLedger, PoolError, RedisBackend

log = logging.getLogger(__name__)

INITIATOR_BINDING_TTL_MS = 86_400_000  # outlives every key handed over for the initiator


class InterKmsBridge:
    def __init__(
        self,
        plan: GatewayPlan,
        engine: RelayEngine,
        router: Router,
        voiding: Voiding,
        *,
        backend: RedisBackend,
        prefix: str,
        ledger: HandoverLedger,
        acks: AckSignal,
    ) -> None:
        self._plan = plan
        self._engine = engine
        self._router = router
        self._voiding = voiding
        self._backend = backend
        self._prefix = prefix
        self._ledger = ledger
        self._acks = acks

    # ----- receiving: the server's InterKmsBackend --------------------------------------------------

    # ----- who may speak for an initiator SAE --------------------------------------------------------

    async def _authorize(self, caller: str, initiator: str, *, bind: bool) -> None:
        """An SAE of our topology is spoken for only by its own gateway; a foreign initiator SAE by the one
        KMS that first handed keys over for it (bound in Redis, so every process of the gateway agrees).
        Without this, any KME could hand keys over in our SAEs' names or void other KMSs' keys."""
        home = self._plan.sae_homes.get(initiator)
        foreign = self._plan.foreign_saes.get(initiator)
        if foreign is not None:
            home = foreign.identity  # an SAE of a foreign domain of the topology: its KMS, pinned there
        if home is not None:
            if caller != home:
                raise Problem(401, UNAUTHORIZED, {"unauthorized": f"{caller} does not speak for {initiator}"})
            return
        name = f"{self._prefix}:020-initiator:{initiator}"
        try:
            if bind:
                await self._backend.command("SET", name, caller, "NX", "PX", INITIATOR_BINDING_TTL_MS)
            owner = await self._backend.command("GET", name)
        except PoolError as exc:
            log.warning("020 initiator binding of %s failed on key storage: %s", initiator, exc)
            raise Problem(503, SERVER_SIDE_ERROR, {"server_side_general_error": exc.public_message}) from None
        if owner is None and not bind:
            return  # nothing was ever handed over for it: nothing to protect (the void finds no key)
        if owner is not None and owner.decode() != caller:
            raise Problem(401, UNAUTHORIZED, {"unauthorized": f"keys of {initiator} are handed over by another KMS"})

    async def check_ext_keys(self, caller: str, request: ExtKeyContainer) -> None:
        await self._authorize(caller, request.initiator_sae_id, bind=False)
        if len(request.target_sae_ids) != 1:
            raise Problem(503, KEY_ROUTING_ERROR, {"no_route_multiple_targets": "one target SAE per request"})
        target = request.target_sae_ids[0]
        home = self._plan.sae_homes.get(target)
        if home is None:
            raise Problem(400, KEY_ROUTING_ERROR, {"target_sae_id_not_recognized": target})
        key_ids = [key.key_id for key in request.keys]
        if len(set(key_ids)) != len(key_ids):
            raise Problem(400, INVALID_PARAMETER, {"key_id": "a key_id appears more than once"})
        if any(not 1 <= len(key.value) <= MAX_KEY_BYTES for key in request.keys):
            raise Problem(400, INVALID_PARAMETER, {"value": f"keys must be 1 to {MAX_KEY_BYTES} bytes"})
        if home != self._plan.id:
            try:
                self._router.route_to(home)
            except RelayFailed as exc:
                raise Problem(503, KEY_ROUTING_ERROR, {"no_known_route": exc.message}) from None
        try:  # last: a request refused for another reason spends none of the pair's share
            await self._engine.charge(request.initiator_sae_id, target, [len(key.value) * 8 for key in request.keys])
        except OverShare as exc:
            raise Problem(503, INSUFFICIENT_KEY_MATERIAL, {"insufficient_key_material": exc.message}) from None
        except PoolError as exc:
            raise Problem(503, SERVER_SIDE_ERROR, {"server_side_general_error": exc.public_message}) from None

    async def deliver(self, caller: str, request: ExtKeyContainer) -> list[AckContainer]:
        target = request.target_sae_ids[0]
        try:
            await self._authorize(caller, request.initiator_sae_id, bind=True)
        except Problem as refused:  # another KMS bound the initiator between check and delivery
            key_ids = tuple(key.key_id for key in request.keys)
            return [
                AckContainer(
                    key_ids, AckStatus.FAILED, request.initiator_sae_id, (target,), message=str(refused.details)
                )
            ]
        extension = json.dumps(request.extension_optional) if request.extension_optional else ""
        outcomes = await asyncio.gather(
            *(self._relay(request.initiator_sae_id, target, key, extension) for key in request.keys)
        )
        relayed = tuple(key.key_id for key, error in zip(request.keys, outcomes, strict=True) if error is None)
        await self._record_received(request.initiator_sae_id, target, relayed)
        failed = [(key.key_id, error) for key, error in zip(request.keys, outcomes, strict=True) if error]
        acks = []
        if relayed:
            acks.append(AckContainer(relayed, AckStatus.RELAYED, request.initiator_sae_id, (target,)))
        if failed:
            acks.append(
                AckContainer(
                    tuple(key_id for key_id, _ in failed),
                    AckStatus.FAILED,
                    request.initiator_sae_id,
                    (target,),
                    message=failed[0][1][:4096],
                )
            )
        return acks

    async def _record_received(self, initiator: str, target: str, key_ids: Sequence[str]) -> None:
        """Remembered for voids only: a lost record makes a later void say ``key not present`` rather than
        ``failed to void``, never makes a key deliverable, so it must not fail the relay."""
        try:
            await self._ledger.record_received(initiator, target, key_ids)
        except PoolError as exc:
            log.warning("020 keys for %s relayed but not recorded for voids: %s", target, exc)

    async def _relay(self, initiator: str, target: str, key: ExtKey, extension: str) -> str | None:
        """None when relayed, else why not."""
        try:
            await self._engine.relay_key(initiator, target, Key(key.key_id, key.value), extension)
        except (RelayFailed, PoolError) as exc:
            log.warning("020 key %s for %s not relayed: %s", key.key_id, target, exc)
            return exc.public_message if isinstance(exc, PoolError) else exc.message
        return None

    async def check_void(self, caller: str, request: VoidContainer) -> None:
        if len(request.target_sae_ids) != 1 or request.target_sae_ids[0] not in self._plan.sae_homes:
            raise Problem(400, KEY_ROUTING_ERROR, {"target_sae_id_not_recognized": ",".join(request.target_sae_ids)})
        await self._authorize(caller, request.initiator_sae_id, bind=False)

    async def void(self, caller: str, request: VoidContainer) -> list[AckContainer]:
        initiator, target = request.initiator_sae_id, request.target_sae_ids[0]
        voided = await self._voiding.void(initiator, target, list(request.key_ids))
        rest = [key_id for key_id in request.key_ids if key_id not in set(voided)]
        try:
            known = await self._ledger.received(initiator, target, rest)
        except PoolError as exc:
            raise Problem(503, SERVER_SIDE_ERROR, {"server_side_general_error": str(exc)}) from None
        outcomes = (
            (AckStatus.VOIDED, tuple(voided), None),
            (
                AckStatus.FAILED_TO_VOID,
                tuple(key_id for key_id in rest if key_id in known),
                "already delivered, voided or expired",
            ),
            (
                AckStatus.KEY_NOT_PRESENT,
                tuple(key_id for key_id in rest if key_id not in known),
                "never handed over for this SAE pair",
            ),
        )
        return [
            AckContainer(key_ids, status, initiator, (target,), message=message)
            for status, key_ids, message in outcomes
            if key_ids
        ]

    async def acknowledged(self, caller: str, acks: Sequence[AckContainer]) -> None:
        """Acks for keys we handed over to ``caller``; the first ack of a key sets its status, a repeated
        one is accepted again. Key_IDs never handed to ``caller`` refuse the whole request (400)."""
        statuses = [(key_id, str(ack.ack_status)) for ack in acks for key_id in ack.key_ids]
        try:
            unknown = await self._ledger.record_acks(caller, statuses)
        except PoolError as exc:
            raise Problem(503, SERVER_SIDE_ERROR, {"server_side_general_error": str(exc)}) from None
        if unknown:
            raise Problem(400, KEY_NOT_PRESENT, {"key_not_present": ", ".join(unknown)[:1024]})
        self._acks.arrived()
