"""Hops sealed and voids signed by hand with a gateway's real identity, for tests that play a (misbehaving)
neighbour."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

import grpc
import requests

from relay.crypto import HopMode, HopRoute, SealedHop, new_void_order, seal_hop, sign_void, system_clock_ms
from relay.crypto.clock import Clock
from relay.crypto.identity import load_identity, load_trust_store
from relay.crypto.kem import PycaKemProvider
from relay.crypto.keyring import EncapsulationKeyAnnouncement
from relay.crypto.void import SIGNATURE_CONTEXT as VOID_CONTEXT
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc
from tests.support.threaded_testbed import ThreadedTestbed

TIMEOUT_S = 10.0


@dataclass
class HandSealed:
    """A pqc-only hop from ``sender`` to ``receiver`` and the RelayKeyRequest that carries it."""

    message: SealedHop
    request: pb.RelayKeyRequest
    key: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        return self.message.header.key_id


def seal_by_hand(
    bed: ThreadedTestbed,
    *,
    sender: str = "GW1",
    receiver: str = "GW2",
    target: str = "SAE-R2-A",
    initiator: str = "SAE-R1-A",
    clock: Clock = system_clock_ms,
) -> HandSealed:
    """Seal with ``sender``'s ML-DSA identity for ``receiver``'s current ek, fetched over gRPC as ``sender``."""
    keys = bed.testbed.keys
    with bed.grpc_channel(receiver, sender) as channel:
        announcement = (
            rpc.EncapsulationKeysStub(channel)
            .GetEncapsulationKey(pb.GetEncapsulationKeyRequest(), timeout=TIMEOUT_S)
            .announcement
        )
    recipient = EncapsulationKeyAnnouncement.from_bytes(announcement).verify(
        load_trust_store(keys.identities), system_clock_ms()
    )
    key, transfer_id = os.urandom(32), uuid.uuid4().bytes
    message = seal_hop(
        key,
        route=HopRoute(transfer_id, 0, str(uuid.uuid4())),
        recipient=recipient,
        identity=load_identity(sender, keys.identities),
        mode=HopMode.PQC_ONLY,
        qkd_key=None,
        kem=PycaKemProvider(),
        clock=clock,
    ).message
    request = pb.RelayKeyRequest(
        transfer_id=transfer_id,
        path=[sender, receiver],
        hop=0,
        initiator_sae_id=initiator,
        target_sae_ids=[target],
        sealed_hop=message.to_bytes(),
    )
    return HandSealed(message, request, key)


def relay_as(bed: ThreadedTestbed, entity: str, to: str, request: pb.RelayKeyRequest) -> tuple[grpc.StatusCode, str]:
    """Send one RelayKeyRequest to ``to`` presenting ``entity``'s certificate; (code, details)."""
    with bed.grpc_channel(to, entity) as channel:
        try:
            rpc.KeyRelayStub(channel).RelayKey(request, timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


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
