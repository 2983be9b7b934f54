"""Redis key names of the pools, built so that each store lives in exactly one Cluster hash slot.

Every store is three things under one hash tag: an index (sorted set of key_ID -> expiry), a tombstone
set (sorted set of key_ID -> tombstone expiry) and one hash per key holding the sealed material. The tag
``{qkd:<link>:<sender>}`` / ``{ready:<master>:<slave>}`` / ``{slave:<master>}`` makes every multi-key
script of a store single-slot. The ETSI 020 hand-over records (:mod:`relay.pool.handovers`) are one
string per key_ID under ``{020in:<initiator>:<target>}`` or ``{020out:<peer KMS>}``, for the same reason.
A lease (:mod:`relay.pool.leases`) lives under the tag of the state its work writes, so the lease and that
state always sit on the same Cluster node (a failover moves them together): a QKD link's filler lease
under its master lane's tag, a pre-relay pair's under the pair's ready pool's, the 020 ack retries' lease
under ``{020acks}`` with the retry queue (:mod:`relay.pool.retries`) it drains.
Names carry only the namespace, link or SAE IDs and key_IDs: none of them
is secret. IDs are percent-encoded so that ``:``, ``{``, ``}`` or spaces in an SAE ID can neither collide
with another name nor break the hash tag.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.domain import check_key_id, name_part

MASTER_LANE = "master"  # the sender of the lane the master of a QKD link sends with (relay.pool.Role.MASTER)


@dataclass(frozen=True)
class StoreKeys:
    """The names of one store; ``material_prefix + key_ID`` names the hash holding that key."""

    index: str
    retired: str
    material_prefix: str

    def material(self, key_id: str) -> str:
        return self.material_prefix + check_key_id(key_id)


@dataclass(frozen=True)
class Keyspace:
    """A gateway's namespace; two gateways sharing one Redis must use different prefixes."""

    prefix: str = "qkdr"

    def __post_init__(self) -> None:
        if not self.prefix or name_part(self.prefix) != self.prefix:
            raise ValueError("the key prefix must be a non-empty token without ':', '{', '}' or spaces")

    def qkd_pool(self, link_id: str, sender: str) -> StoreKeys:
        return self._store(_qkd_tag(link_id, sender))

    def ready(self, master_sae_id: str, slave_sae_id: str) -> StoreKeys:
        return self._store(_ready_tag(master_sae_id, slave_sae_id))

    def waiting_for_slaves(self, master_sae_id: str) -> StoreKeys:
        return self._store(f"slave:{name_part(master_sae_id)}")

    def handed_to_us(self, initiator_sae_id: str, target_sae_id: str) -> str:
        """Prefix of the records (``+ key_ID``) of keys another KMS handed us for an SAE pair (020)."""
        return f"{self.prefix}:{{020in:{name_part(initiator_sae_id)}:{name_part(target_sae_id)}}}:"

    def handed_over(self, peer_id: str) -> str:
        """Prefix of the records (``+ key_ID``) of keys we handed over to the KMS ``peer_id`` (020)."""
        return f"{self.prefix}:{{020out:{name_part(peer_id)}}}:"

    def demand(self, bucket: int) -> str:
        """One time bucket of the SAE pairs' requests (:mod:`relay.pool.demand`); all buckets share one slot."""
        return f"{self.prefix}:{{demand}}:{bucket}"

    def share(self, master_sae_id: str, slave_sae_id: str, bucket: str) -> str:
        """One token bucket of an SAE pair's fair share (:mod:`relay.pool.buckets`); one tag per pair, so a
        script over all of a pair's buckets is single-slot."""
        return f"{self.prefix}:{{share:{name_part(master_sae_id)}:{name_part(slave_sae_id)}}}:{name_part(bucket)}"

    def qkd_filler_lease(self, link_id: str) -> str:
        """The lease of the filler (and announcer) of a QKD link, on the master's lane's tag."""
        return f"{self.prefix}:{{{_qkd_tag(link_id, MASTER_LANE)}}}:lease"

    def prerelay_lease(self, master_sae_id: str, slave_sae_id: str) -> str:
        """The lease of pre-relay for one SAE pair, on the tag of the pair's ready pool."""
        return f"{self.prefix}:{{{_ready_tag(master_sae_id, slave_sae_id)}}}:lease"

    def ack_retries(self) -> str:
        """Prefix of the 020 ack retry queue (:class:`relay.pool.retries.RetryQueue`)."""
        return f"{self.prefix}:{{020acks}}:"

    def ack_retries_lease(self) -> str:
        """The lease of the 020 ack retries, on the retry queue's tag."""
        return self.ack_retries() + "lease"

    def _store(self, tag: str) -> StoreKeys:
        base = f"{self.prefix}:{{{tag}}}"
        return StoreKeys(index=f"{base}:idx", retired=f"{base}:used", material_prefix=f"{base}:k:")


def _qkd_tag(link_id: str, sender: str) -> str:
    return f"qkd:{name_part(link_id)}:{name_part(sender)}"


def _ready_tag(master_sae_id: str, slave_sae_id: str) -> str:
    return f"ready:{name_part(master_sae_id)}:{name_part(slave_sae_id)}"
