"""Hop frames sealed and voids signed by hand with a gateway's real identity, for tests that play a
(misbehaving) neighbour.

A frame is sealed exactly as the sender's relay engine would: its ML-DSA identity, the receiver's current
encapsulation key as the sender's own :class:`~relay.gateway.peers.Peer` fetched and verified it, the
link's ``qkd_use``, and (for a qkd+pqc frame) QKD keys taken from the sender's outbound lane, whose copies
the receiver holds. The async helpers work on a :class:`LocalTestbed` in the test's loop; the blocking ones
on a :class:`ThreadedTestbed`, whose gateways run in a loop of their own thread, and they send over a
blocking channel presenting any entity's certificate.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import requests

from relay.crypto import (
    FrameEntry,
    HopMode,
    PendingFrame,
    QkdKey,
    QkdUse,
    SealedFrame,
    load_identity,
    new_void_order,
    pad_keys_needed,
    seal_frame,
    sign_void,
    system_clock_ms,
)
from relay.crypto.clock import Clock
from relay.crypto.kem import PycaKemProvider
from relay.crypto.void import SIGNATURE_CONTEXT as VOID_CONTEXT
from relay.gateway.hops import ItemOutcome, decode_outcomes
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc
from tests.support.local_testbed import LocalTestbed
from tests.support.threaded_testbed import ThreadedTestbed

TIMEOUT_S = 10.0


def entry(
    path: Sequence[str] = ("GW1", "GW2"),
    target: str = "SAE-R2-A",
    *,
    initiator: str = "SAE-R1-A",
    hop: int = 0,
    key_id: str | None = None,
    size: int = 32,
) -> FrameEntry:
    """One fresh key of its own transfer, hop ``hop`` of ``path`` towards ``target`` (a new key_ID unless given)."""
    return FrameEntry(
        uuid.uuid4().bytes, hop, tuple(path), initiator, target, key_id or str(uuid.uuid4()), os.urandom(size)
    )


@dataclass(frozen=True)
class Answer:
    """How a RelayFrame call ended: its status, and on OK the outcomes and the confirmation it carried."""

    code: grpc.StatusCode
    details: str = ""
    outcomes: bytes = b""
    confirmation: bytes = b""


@dataclass
class HandSealed:
    """A frame sealed by hand, with the entries it carries and what its sender needs to believe the answer."""

    pending: PendingFrame
    entries: tuple[FrameEntry, ...]

    @property
    def message(self) -> SealedFrame:
        return self.pending.message

    @property
    def request(self) -> pb.RelayFrameRequest:
        return pb.RelayFrameRequest(sealed_frame=self.message.to_bytes())

    @property
    def key_id(self) -> str:
        """The key_ID of the frame's only key."""
        (only,) = self.entries
        return only.key_id

    def outcomes(self, answer: Answer) -> tuple[ItemOutcome, ...]:
        """Each key's outcome in an answer, once the receiver's confirmation of exactly those bytes verified."""
        assert answer.code is grpc.StatusCode.OK, f"{answer.code.name}: {answer.details}"
        self.pending.verify_confirmation(answer.outcomes, answer.confirmation)
        return decode_outcomes(answer.outcomes, len(self.entries))


async def seal_in(
    testbed: LocalTestbed,
    entries: Sequence[FrameEntry] | None = None,
    *,
    sender: str = "GW1",
    receiver: str = "GW2",
    qkd: bool = False,
    clock: Clock = system_clock_ms,
) -> HandSealed:
    """``entries`` (by default one key for SAE-R2-A from SAE-R1-A along [sender, receiver]) in one frame
    from ``sender`` to ``receiver``: qkd+pqc with ``qkd`` (one QKD key, plus the pads an otp link takes,
    from ``sender``'s outbound lane), else pqc-only; dated by ``clock``."""
    entries = list(entries or [entry((sender, receiver))])
    gateway = testbed.gateways[sender]
    qkd_use = gateway.plan.neighbours[receiver].qkd_use
    qkd_keys: list[QkdKey] = []
    if qkd:
        pads = sum(pad_keys_needed(len(e.key)) for e in entries) if qkd_use is QkdUse.OTP else 0
        taken = await gateway.qkd_lanes.outbound(receiver).take(1 + pads)
        qkd_keys = [QkdKey(key.key_id, key.key) for key in taken]
    pending = seal_frame(
        entries,
        recipient=await gateway.peers[receiver].encapsulation_key(),
        identity=load_identity(sender, testbed.keys.identities),
        mode=HopMode.QKD_PQC if qkd else HopMode.PQC_ONLY,
        qkd_use=qkd_use,
        qkd_key=qkd_keys[0] if qkd_keys else None,
        pad_keys=qkd_keys[1:],
        kem=PycaKemProvider(),
        clock=clock,
    )
    return HandSealed(pending, tuple(entries))


async def send_in(testbed: LocalTestbed, sealed: bytes, *, sender: str = "GW1", receiver: str = "GW2") -> Answer:
    """One RelayFrame call over ``sender``'s own channel to ``receiver`` (so with ``sender``'s certificate)."""
    stub = testbed.gateways[sender].peers[receiver].relay
    try:
        answer = await stub.RelayFrame(pb.RelayFrameRequest(sealed_frame=sealed), timeout=TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        return Answer(exc.code(), exc.details() or "")
    return Answer(grpc.StatusCode.OK, "", answer.outcomes, answer.key_confirmation)


def seal_by_hand(
    bed: ThreadedTestbed,
    entries: Sequence[FrameEntry] | None = None,
    *,
    sender: str = "GW1",
    receiver: str = "GW2",
    qkd: bool = False,
    clock: Clock = system_clock_ms,
) -> HandSealed:
    """:func:`seal_in` in the threaded testbed's loop."""
    return bed.run(seal_in(bed.testbed, entries, sender=sender, receiver=receiver, qkd=qkd, clock=clock))


def relay_as(bed: ThreadedTestbed, entity: str, to: str, request: pb.RelayFrameRequest) -> Answer:
    """Send one RelayFrameRequest to ``to`` presenting ``entity``'s certificate."""
    with bed.grpc_channel(to, entity) as channel:
        try:
            answer = rpc.KeyRelayStub(channel).RelayFrame(request, timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            return Answer(exc.code(), exc.details() or "")
    return Answer(grpc.StatusCode.OK, "", answer.outcomes, answer.key_confirmation)


def deliver(bed: ThreadedTestbed, sealed: HandSealed, *, sender: str = "GW1", receiver: str = "GW2") -> ItemOutcome:
    """Send a one-key frame as its sender; the key's confirmed outcome."""
    (outcome,) = sealed.outcomes(relay_as(bed, sender, receiver, sealed.request))
    return outcome


def void_by_hand(
    bed: ThreadedTestbed,
    key_ids: list[str],
    path: list[str],
    *,
    signer: str | None = None,
    hop: int = 0,
    target: str = "SAE-R2-A",
    initiator: str = "SAE-R1-A",
    clock: Clock = system_clock_ms,
) -> pb.VoidKeysRequest:
    """A VoidKeysRequest signed with ``signer``'s ML-DSA identity (the path's origin by default)."""
    order = new_void_order(tuple(key_ids), initiator, target, tuple(path), clock=clock)
    signer = signer or path[0]
    identity = load_identity(signer, bed.testbed.keys.identities)
    signature = (
        sign_void(order, identity)
        if signer == path[0]
        else identity.sign(order.transcript(), VOID_CONTEXT)  # a gateway signing another's path
    )
    return pb.VoidKeysRequest(
        key_ids=key_ids,
        initiator_sae_id=initiator,
        target_sae_ids=[target],
        path=path,
        hop=hop,
        nonce=order.nonce,
        issued_at_ms=order.issued_at_ms,
        signature=signature,
    )


def void_as(
    bed: ThreadedTestbed, entity: str, to: str, request: pb.VoidKeysRequest
) -> tuple[grpc.StatusCode, str, list[str]]:
    """Send one VoidKeysRequest to ``to`` presenting ``entity``'s certificate; (code, details, voided)."""
    with bed.grpc_channel(to, entity) as channel:
        try:
            answer = rpc.KeyRelayStub(channel).VoidKeys(request, timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or "", []
    return grpc.StatusCode.OK, "", list(answer.voided_key_ids)


def fetch(bed: ThreadedTestbed, slave: str, master: str, key_id: str) -> requests.Response:
    """The slave SAE's ``dec_keys`` for one key_ID at its home gateway."""
    home = bed.testbed.topology
    gateway = next(sae.gateway for sae in home.saes if sae.id == slave)
    return bed.session(slave).get(
        f"{bed.url(gateway, 'etsi014')}/api/v1/keys/{master}/dec_keys", params={"key_ID": key_id}, timeout=TIMEOUT_S
    )


def enc_keys(bed: ThreadedTestbed, master: str, gateway: str, slave: str, number: int = 1) -> requests.Response:
    """The master SAE's ``enc_keys``; a 503 from a drained require-qkd link is retried after a refill."""
    url = f"{bed.url(gateway, 'etsi014')}/api/v1/keys/{slave}/enc_keys"
    for attempt in range(3):
        response = bed.session(master).get(url, params={"number": number}, timeout=TIMEOUT_S)
        if response.status_code != 503 or attempt == 2:
            return response
        bed.refill()
    raise AssertionError("unreachable")
