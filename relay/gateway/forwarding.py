"""One hop across one link, in frames: keys for a neighbour queue up and leave together, each frame sealed
once and sent; frames from the previous gateway are opened here.

A key counts as delivered only when the next gateway's confirmation of the frame's outcomes verifies and
its own outcome says stored; that gateway answers a frame only once every key in it is stored at its last
gateway or has failed, so the answer to hop 0 is each key's end-to-end ack. Keys queued for one neighbour
while frames are on their way coalesce into the next frame (:mod:`relay.gateway.coalescing`). How a frame
travels is the transport's business (:class:`HopTransport`), how it is protected the link policy's
(:class:`HopProtection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from relay.crypto import FrameEntry, OpenedFrame, PendingFrame, QkdUse, SealedFrame, pad_keys_needed
from relay.crypto.errors import ConfirmationFailed, MalformedMessage
from relay.crypto.header import MAX_TEXT_SIZE
from relay.domain import Key
from relay.gateway.coalescing import Coalescer
from relay.gateway.config import Neighbour
from relay.gateway.errors import QkdExhausted, RelayFailed
from relay.gateway.grpc_tls import MAX_FRAME_BYTES
from relay.gateway.hop_protection import HopProtection
from relay.gateway.hops import HopTransport, Outcome, decode_outcomes
from relay.gateway.qkd_admission import MIN_SEND_S, QkdAdmission
from relay.gateway.relay_events import RelayObserver, RelayOrigin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Outgoing:
    entry: FrameEntry
    deadline: float  # time.monotonic() by which its sender wants the answer


def _wire_bytes(outgoing: _Outgoing, *, padded: bool) -> int:
    """At least what a key adds to a frame on the wire: its item header, wrapped key and (otp) pad key_IDs
    at their longest. Frames stay within ``MAX_FRAME_BYTES`` by this count."""
    entry = outgoing.entry
    texts = (*entry.path, entry.initiator, entry.target, entry.key_id, entry.extension_json)
    pads = pad_keys_needed(len(entry.key)) * (MAX_TEXT_SIZE + 4) if padded else 0
    return 96 + len(entry.key) + sum(len(text.encode()) + 4 for text in texts) + pads


class HopForwarder:
    def __init__(
        self,
        protection: HopProtection,
        transport: HopTransport,
        observer: RelayObserver,
        neighbours: Mapping[str, Neighbour],
        *,
        frames_in_flight: int,
        admissions: Mapping[str, QkdAdmission],
        waiting_links: frozenset[frozenset[str]],
    ) -> None:
        """``admissions``: the require-qkd links' admission, by neighbour ID; ``waiting_links``: the gateway
        pairs of every require-qkd link of the topology (where keys wait for QKD key)."""
        self._protection = protection
        self._transport = transport
        self._observer = observer
        self._admissions = admissions
        self._waiting_links = waiting_links
        self._links = {
            neighbour_id: Coalescer[_Outgoing, str](
                functools.partial(self._send, neighbour_id),
                max_batch=neighbour.link.frame_keys,
                in_flight=frames_in_flight,
                size_of=functools.partial(_wire_bytes, padded=neighbour.qkd_use is QkdUse.OTP),
                max_size=MAX_FRAME_BYTES,
            )
            for neighbour_id, neighbour in neighbours.items()
        }

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
        admitted: bool = False,
    ) -> str:
        """Send hop ``hop`` of one key (this gateway is ``path[hop]``) in the next frame to ``path[hop + 1]``;
        returns the gateway storing the key. ``admitted``: its request holds a place for it already
        (:meth:`admit_request`)."""
        entry = FrameEntry(transfer_id, hop, path, initiator, target, key.key_id, key.key, extension_json, no_degrade)
        outgoing = _Outgoing(entry, time.monotonic() + timeout_s)
        link = self._links[path[hop + 1]]
        if admitted:
            return await link.submit(outgoing)
        with self.admit_request(path, hop, [8 * len(key.key)], timeout_s, no_degrade=no_degrade):
            return await link.submit(outgoing)

    def admit_request(
        self, path: tuple[str, ...], hop: int, key_sizes_bits: Sequence[int], timeout_s: float, *, no_degrade: bool
    ) -> AbstractContextManager[None]:
        """A place for keys of these sizes on hop ``hop`` of ``path`` if its link is require-qkd, all or
        none (:class:`QkdAdmission`); an SAE's request takes one for all its keys, so it is never half
        admitted and half refused. The hop may wait its share of the time: later require-qkd hops wait in turn."""
        admission = self._admissions.get(path[hop + 1])
        if admission is None:
            return contextlib.nullcontext()
        waits_ahead = sum(frozenset(pair) in self._waiting_links for pair in zip(path[hop:], path[hop + 1 :]))
        try:
            return admission.admit(key_sizes_bits, timeout_s / max(1, waits_ahead))
        except QkdExhausted:
            self._observer.counts.of(RelayOrigin.of_hop(no_degrade)).qkd_exhausted += len(key_sizes_bits)
            raise

    async def open(self, message: SealedFrame, sender: str) -> OpenedFrame:
        """Open a frame from neighbour ``sender`` under its link's policy."""
        opened = await self._protection.open(message, sender)
        self._observer.counts.frames_received += 1
        self._observer.counts.hops_received += len(opened.keys)
        return opened

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in self._links.values()))

    async def _send(self, neighbour_id: str, batch: list[_Outgoing]) -> list[str | BaseException]:
        """Seal a batch for ``neighbour_id`` (one frame, or two when QKD key runs short) and send it."""
        recipient = await self._transport.encapsulation_key(neighbour_id)
        entries = [outgoing.entry for outgoing in batch]
        send_by = [outgoing.deadline - MIN_SEND_S for outgoing in batch]
        sealing = await self._protection.seal(entries, neighbour_id, recipient, send_by=send_by)
        results: list[str | BaseException] = [RelayFailed("not sent", retryable=True)] * len(batch)
        if sealing.refused:
            # A lane also runs dry because its neighbour is gone (nothing refills it then): name that cause.
            cause: RelayFailed | None = None
            if not await self._transport.reachable(neighbour_id):
                a, b = sorted((entries[0].path[entries[0].hop], neighbour_id))
                cause = RelayFailed(
                    f"gateway {neighbour_id} is down (it failed its liveness probe)", retryable=True, down_link=(a, b)
                )
            for index, refusal in sealing.refused.items():
                results[index] = cause or refusal
        sent = await asyncio.gather(
            *(
                self._send_frame(neighbour_id, pending, [batch[i] for i in indices])
                for pending, indices in sealing.frames
            ),
            return_exceptions=True,
        )
        for (_, indices), outcome in zip(sealing.frames, sent, strict=True):
            for position, index in enumerate(indices):
                results[index] = outcome if isinstance(outcome, BaseException) else outcome[position]
        return results

    async def _send_frame(
        self, neighbour_id: str, pending: PendingFrame, batch: Sequence[_Outgoing]
    ) -> list[str | BaseException]:
        """One frame to the neighbour: every key's stored-at gateway, or its failure."""
        try:
            self._observer.counts.hops_sent += len(batch)
            timeout_s = max(outgoing.deadline for outgoing in batch) - time.monotonic()
            started = time.perf_counter()
            answer = await self._transport.send_frame(
                neighbour_id, pending.message.to_bytes(), len(batch), timeout_s=timeout_s
            )
            try:
                pending.verify_confirmation(answer.outcomes, answer.confirmation)
                outcomes = decode_outcomes(answer.outcomes, len(batch))
            except (ConfirmationFailed, MalformedMessage) as exc:
                raise RelayFailed(f"{neighbour_id} confirmed a frame wrongly: {exc}", retryable=False) from exc
        finally:
            pending.wipe()
        elapsed = time.perf_counter() - started
        header = pending.message.header
        self._observer.hop_confirmed(neighbour_id, batch[0].entry.hop, elapsed)
        log.debug(
            "frame %s: %d keys to %s (%s) answered in %.1f ms",
            header.frame_id.hex(),
            len(batch),
            neighbour_id,
            header.mode.value,
            elapsed * 1000,
            extra={
                "frame_id": header.frame_id.hex(),
                "neighbour": neighbour_id,
                "mode": header.mode.value,
                "transfer_ids": [item.transfer_id.hex() for item in header.items],
            },
        )
        return [item.detail if item.outcome is Outcome.STORED else item.failure(neighbour_id) for item in outcomes]
