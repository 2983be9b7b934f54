"""One hop across one link: sealing a key for the next gateway and sending it, opening what the previous
gateway sent.

A hop counts as delivered only when the next gateway's key confirmation verifies, and that gateway
confirms only once the key is stored at the last gateway; so the confirmation of hop 0 is the
end-to-end ack. How the hop travels is the transport's business (:class:`HopTransport`), how it is
protected the link policy's (:class:`HopProtection`).
"""

from __future__ import annotations

import logging
import time

from relay.crypto import HopRoute, OpenedHop, SealedHop
from relay.crypto.errors import ConfirmationFailed
from relay.domain import Key
from relay.gateway.errors import QkdExhausted, RelayFailed
from relay.gateway.hop_protection import HopProtection
from relay.gateway.hops import HopRequest, HopTransport
from relay.gateway.relay_events import RelayObserver

log = logging.getLogger(__name__)


class HopForwarder:
    def __init__(self, protection: HopProtection, transport: HopTransport, observer: RelayObserver) -> None:
        self._protection = protection
        self._transport = transport
        self._observer = observer

    async def forward(
        self,
        transfer_id: bytes,
        path: tuple[str, ...],
        hop: int,
        initiator: str,
        target: str,
        key: Key,
        *,
        extension_json: str,
        timeout_s: float,
        no_degrade: bool,
    ) -> str:
        """Send hop ``hop`` (this gateway is ``path[hop]``); returns the gateway storing the key."""
        neighbour_id = path[hop + 1]
        recipient = await self._transport.encapsulation_key(neighbour_id)
        try:
            pending, mode = await self._protection.seal(
                key.key, HopRoute(transfer_id, hop, key.key_id), neighbour_id, recipient, no_degrade=no_degrade
            )
        except QkdExhausted:
            # A lane also runs dry because its neighbour is gone (nothing refills it then): name that cause.
            if not await self._transport.reachable(neighbour_id):
                a, b = sorted((path[hop], neighbour_id))
                raise RelayFailed(
                    f"gateway {neighbour_id} is down (it failed its liveness probe)", retryable=True, down_link=(a, b)
                ) from None
            raise
        request = HopRequest(
            transfer_id, path, hop, initiator, (target,), pending.message.to_bytes(), extension_json, no_degrade
        )
        self._observer.counts.hops_sent += 1
        sent = time.perf_counter()
        result = await self._transport.send_hop(neighbour_id, request, timeout_s=timeout_s)
        try:
            pending.verify_confirmation(result.key_confirmation)
        except ConfirmationFailed as exc:
            raise RelayFailed(f"{neighbour_id} confirmed hop {hop} wrongly: {exc}", retryable=False) from exc
        elapsed = time.perf_counter() - sent
        self._observer.hop_confirmed(neighbour_id, hop, elapsed)
        log.debug(
            "transfer %s: hop %d to %s (%s) confirmed in %.1f ms",
            transfer_id.hex(),
            hop,
            neighbour_id,
            mode,
            elapsed * 1000,
            extra={"transfer_id": transfer_id.hex(), "hop": hop, "neighbour": neighbour_id, "mode": str(mode)},
        )
        return result.stored_at

    async def open(self, message: SealedHop, sender: str) -> OpenedHop:
        """Open a hop from neighbour ``sender`` under its link's policy."""
        opened = await self._protection.open(message, sender)
        self._observer.counts.hops_received += 1
        return opened
