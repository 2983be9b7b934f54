"""Telling the peer gateway which QKD keys were fetched, and the peer's side that collects them.

The master gateway of a link calls enc_keys; the vendor then keeps the keys for the slave only briefly
(about 10 s), so the master announces the key_IDs at once and the slave fetches its copies with dec_keys
and stores them in the same lane. The transport is injected (:class:`PeerAnnouncer`) because it is gRPC
between gateways but a direct call in tests and single-process setups; the receiving side is the real
:class:`AnnouncementReceiver` in every case.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from relay.etsi014.client import Etsi014Client, KmeError, KmeProtocolError, KmeUnreachable
from relay.pool import MAX_BATCH, QkdPool, Role

log = logging.getLogger(__name__)

KME_ERRORS = (KmeError, KmeUnreachable, KmeProtocolError)  # the KME refused or could not be reached


class PeerAnnouncer(Protocol):
    """Delivers an announcement to the peer's :meth:`AnnouncementReceiver.accept_announced`.

    Returns the key_IDs the peer stored. Raising means the outcome is unknown (the peer may hold some).
    """

    async def announce(self, link_id: str, sender: Role, key_ids: Sequence[str]) -> Sequence[str]: ...


class AnnouncementReceiver:
    """The slave gateway's end of one link: fetches announced keys from its KME and stores them."""

    def __init__(self, link_id: str, master_sae_id: str, kme: Etsi014Client, pools: Mapping[Role, QkdPool]) -> None:
        self.link_id = link_id
        self._master = master_sae_id
        self._kme = kme
        self._pools = pools

    async def accept_announced(self, sender: Role, key_ids: Sequence[str]) -> list[str]:
        """Fetch the keys with dec_keys and store them in the ``sender`` lane; returns the key_IDs stored.

        A KME refusal (keys expired at the vendor, unknown, not ours) means nothing was stored, which is a
        definite answer, so it returns ``[]`` instead of raising. PoolUnavailable is raised: whether the
        keys got stored is then unknown.
        """
        if not key_ids or len(key_ids) > MAX_BATCH or len(set(key_ids)) != len(key_ids):
            raise ValueError(f"an announcement names 1 to {MAX_BATCH} distinct key_IDs")
        try:
            container = await self._kme.get_key_with_ids(self._master, key_ids, use_post=True)
        except KME_ERRORS as exc:
            log.warning("link %s: could not fetch %d announced keys: %s", self.link_id, len(key_ids), exc)
            return []
        return await self._pools[sender].put(container.keys)
