"""ETSI GS QKD 020 at the domain border: keys another KMS hands us are relayed to their target SAE, and
keys we hand to another 020 KMS are tracked until its acks arrive.

Receiving (:class:`InterKmsBridge` as the server's backend): what can be refused at once is refused
before 202 and leaves nothing behind (unknown target SAE: 400; several targets or no route: 503); each
key then travels the hop-by-hop relay with its key_ID preserved, so the target SAE asks its gateway for
exactly the key_ID the initiator SAE was given. Each key is acked ``relayed`` only once stored at the
target's gateway, or ``failed`` (and voided) otherwise.

Handing over (:meth:`InterKmsBridge.hand_over`): POST ext_keys in the asynchronous mode with our own
ack callback, and wait for the peer's ack of every key; keys not acked in time are voided at the peer,
as the spec requires of a sender that cannot tell whether the association exists.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from relay.domain import Key
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
from relay.gateway.config import GatewayPlan
from relay.gateway.errors import RelayFailed
from relay.gateway.relay_engine import RelayEngine
from relay.gateway.routing import Router
from relay.gateway.voiding import Voiding
from relay.pool import PoolError, RedisBackend

log = logging.getLogger(__name__)

MAX_KEY_BYTES = 1024  # what one hop header can carry
ACK_PATH = "/kmapi/v1/ext_keys/ack"
DEFAULT_ACK_TIMEOUT_S = 30.0
INITIATOR_BINDING_TTL_MS = 86_400_000  # outlives every key handed over for the initiator


@dataclass(frozen=True)
class HandoverResult:
    statuses: dict[str, AckStatus]  # per key_ID; keys the peer never acked are voided and absent here


class InterKmsBridge:
    def __init__(
        self,
        plan: GatewayPlan,
        engine: RelayEngine,
        router: Router,
        voiding: Voiding,
        *,
        own_url: str,
        backend: RedisBackend,
        prefix: str,
    ) -> None:
        self._plan = plan
        self._engine = engine
        self._router = router
        self._voiding = voiding
        self._callback_url = own_url.rstrip("/") + ACK_PATH
        self._backend = backend
        self._prefix = prefix
        self._awaiting: dict[str, tuple[str, asyncio.Future[AckStatus]]] = {}  # key_ID -> (peer, ack)

    # ----- receiving: the server's InterKmsBackend --------------------------------------------------

    # ----- who may speak for an initiator SAE --------------------------------------------------------

    async def _authorize(self, caller: str, initiator: str, *, bind: bool) -> None:
        """An SAE of our topology is spoken for only by its own gateway; a foreign initiator SAE by the one
        KMS that first handed keys over for it (bound in Redis, so every process of the gateway agrees).
        Without this, any KME could hand keys over in our SAEs' names or void other KMSs' keys."""
        home = self._plan.sae_homes.get(initiator)
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
        target = request.target_sae_ids[0]
        voided = await self._voiding.void(request.initiator_sae_id, target, list(request.key_ids))
        not_voided = tuple(key_id for key_id in request.key_ids if key_id not in set(voided))
        acks = []
        if voided:
            acks.append(AckContainer(tuple(voided), AckStatus.VOIDED, request.initiator_sae_id, (target,)))
        if not_voided:
            acks.append(
                AckContainer(
                    not_voided,
                    AckStatus.FAILED_TO_VOID,
                    request.initiator_sae_id,
                    (target,),
                    message="already delivered, expired, or not held for this SAE pair",
                )
            )
        return acks

    async def acknowledged(self, caller: str, acks: Sequence[AckContainer]) -> None:
        """Acks for keys we handed over; every key_ID must be one we are waiting for from ``caller``."""
        unknown = [
            key_id for ack in acks for key_id in ack.key_ids if self._awaiting.get(key_id, ("", None))[0] != caller
        ]
        if unknown:
            raise Problem(400, KEY_NOT_PRESENT, {"key_not_present": ", ".join(unknown)[:1024]})
        for ack in acks:
            for key_id in ack.key_ids:
                _, future = self._awaiting.pop(key_id)
                if not future.done():
                    future.set_result(ack.ack_status)

    # ----- handing over to another 020 KMS ----------------------------------------------------------

    async def hand_over(
        self,
        peer: Etsi020Client,
        peer_id: str,
        initiator: str,
        target: str,
        keys: Sequence[Key],
        *,
        timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
    ) -> HandoverResult:
        """Give ``keys`` to the KMS ``peer_id`` for ``target``; returns each key's ack status."""
        loop = asyncio.get_running_loop()
        futures = {key.key_id: loop.create_future() for key in keys}
        for key_id, future in futures.items():
            self._awaiting[key_id] = (peer_id, future)
        request = ExtKeyContainer(
            tuple(ExtKey(key.key_id, key.key) for key in keys),
            initiator,
            (target,),
            ack_callback_url=self._callback_url,
        )
        try:
            await peer.ext_keys(request)
        except PeerProblem as exc:
            if exc.status in (400, 401):  # the peer kept no association: nothing to void
                self._forget(futures)
                raise
        except PeerUnreachable:
            pass  # the association may exist: wait for acks, void what stays unacknowledged
        done, _ = await asyncio.wait(futures.values(), timeout=timeout_s)
        statuses = {key_id: future.result() for key_id, future in futures.items() if future in done}
        self._forget(futures)
        unacked = tuple(key_id for key_id in futures if key_id not in statuses)
        if unacked:
            with_no_ack = VoidContainer(unacked, initiator, (target,))
            try:
                await peer.void(with_no_ack)
            except (PeerProblem, PeerUnreachable) as exc:
                log.warning("could not void %d unacknowledged keys at %s: %s", len(unacked), peer_id, exc)
        return HandoverResult(statuses)

    def _forget(self, futures: dict[str, asyncio.Future[AckStatus]]) -> None:
        for key_id in futures:
            self._awaiting.pop(key_id, None)
