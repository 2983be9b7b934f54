"""Redis records of ETSI 020 hand-overs, so every process of a gateway, and the same one after a restart,
answers a retried ack or void as the first one was answered.

Two ledgers, one string per key_ID, each living ``ttl_s`` (the lifetime of the keys it describes, so a
record never outlives the question it answers by much):

* keys another KMS handed us (``{020in:<initiator>:<target>}``): recorded once relayed and stored, so a
  later void tells a key that never existed (``key not present``) from one already delivered or expired.
* keys we handed to a KMS (``{020out:<peer>}``): ``awaiting`` until the peer's first ack sets its status;
  a repeated ack finds the status set and is accepted again, unchanged. ``abandoned`` marks a key we
  stopped waiting for (and voided at the peer): a late ack is accepted and changes nothing.

Every multi-key operation is one Lua script (``Script.LEDGER_*``, run by hash like the stores') over
names of one hash slot, hence atomic; statuses are opaque strings here (the 020 wire enum is the
gateway's business).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relay.domain import check_key_id
from relay.pool.connection import RedisBackend
from relay.pool.keys import Keyspace
from relay.pool.scripts import Script

AWAITING = "awaiting"
ABANDONED = "abandoned"
_RECEIVED = "received"


class HandoverLedger:
    def __init__(self, backend: RedisBackend, keyspace: Keyspace, *, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._backend = backend
        self._keyspace = keyspace
        self._ttl_ms = round(ttl_s * 1000)

    # ----- keys handed to us -------------------------------------------------------------------

    async def record_received(self, initiator: str, target: str, key_ids: Sequence[str]) -> None:
        names = self._names(self._keyspace.handed_to_us(initiator, target), key_ids)
        await self._eval(Script.LEDGER_CREATE, names, [_RECEIVED, self._ttl_ms])

    async def received(self, initiator: str, target: str, key_ids: Sequence[str]) -> set[str]:
        """Those of ``key_ids`` handed to us for this SAE pair within the records' lifetime."""
        names = self._names(self._keyspace.handed_to_us(initiator, target), key_ids)
        values = await self._backend.command("MGET", *names) if names else []
        return {key_id for key_id, value in zip(key_ids, values, strict=True) if value is not None}

    # ----- keys we handed over ------------------------------------------------------------------

    async def expect_acks(self, peer: str, key_ids: Sequence[str]) -> None:
        await self._eval(
            Script.LEDGER_CREATE, self._names(self._keyspace.handed_over(peer), key_ids), [AWAITING, self._ttl_ms]
        )

    async def record_acks(self, peer: str, statuses: Sequence[tuple[str, str]]) -> list[str]:
        """Set each key's status unless already set; returns the key_IDs never handed to ``peer`` (then
        nothing is recorded at all)."""
        names = self._names(self._keyspace.handed_over(peer), [key_id for key_id, _ in statuses])
        absent = await self._eval(Script.LEDGER_SETTLE, names, [status for _, status in statuses])
        return [statuses[int(i) - 1][0] for i in absent]

    async def acked(self, peer: str, key_ids: Sequence[str]) -> dict[str, str]:
        """The status the peer acked for each of ``key_ids`` it acked (not those awaiting or abandoned)."""
        names = self._names(self._keyspace.handed_over(peer), key_ids)
        values = await self._backend.command("MGET", *names) if names else []
        return {
            key_id: value.decode()
            for key_id, value in zip(key_ids, values, strict=True)
            if value is not None and value.decode() not in (AWAITING, ABANDONED)
        }

    async def abandon(self, peer: str, key_ids: Sequence[str]) -> list[str]:
        """Stop waiting for acks of ``key_ids``; returns those still unacknowledged (an ack may have won)."""
        marked = await self._eval(Script.LEDGER_ABANDON, self._names(self._keyspace.handed_over(peer), key_ids), [])
        return [key_ids[int(i) - 1] for i in marked]

    async def forget(self, peer: str, key_ids: Sequence[str]) -> None:
        """Drop records of keys the peer refused outright (400, 401: it kept no association)."""
        names = self._names(self._keyspace.handed_over(peer), key_ids)
        if names:
            await self._backend.command("DEL", *names)

    @staticmethod
    def _names(prefix: str, key_ids: Sequence[str]) -> list[str]:
        return [prefix + check_key_id(key_id) for key_id in key_ids]

    async def _eval(self, script: Script, names: Sequence[str], args: Sequence[str | int]) -> Any:
        if not names:
            return []
        return await self._backend.run(script, names, args)
