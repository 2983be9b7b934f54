"""Nobody acts under another's identity: SAEs, gateways and KMEs are told apart by certificate alone."""

from __future__ import annotations

import base64
import dataclasses

import grpc
import pytest

from relay.gateway.hops import Outcome
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc
from tests.support.hand_sealed_hops import (
    TIMEOUT_S,
    HandSealed,
    deliver,
    enc_keys,
    entry,
    fetch,
    relay_as,
    seal_by_hand,
)
from tests.support.threaded_testbed import ThreadedTestbed


def _enc_keys(bed: ThreadedTestbed, master: str, gateway: str, slave: str) -> tuple[int, dict]:
    response = enc_keys(bed, master, gateway, slave)
    return response.status_code, response.json()


def test_an_sae_cannot_fetch_keys_issued_to_another(bed: ThreadedTestbed) -> None:
    status, issued = _enc_keys(bed, "SAE-R1-A", "GW1", "SAE-R3-A")
    assert status == 200
    key = issued["keys"][0]
    refused = fetch(bed, "SAE-R3-B", "SAE-R1-A", key["key_ID"])
    assert refused.status_code == 401 and "message" in refused.json()
    assert key["key"] not in refused.text
    fetched = fetch(bed, "SAE-R3-A", "SAE-R1-A", key["key_ID"])  # the refusal did not burn it
    assert fetched.status_code == 200 and fetched.json()["keys"][0]["key"] == key["key"]


def test_an_sae_cannot_use_a_gateway_that_does_not_serve_it(bed: ThreadedTestbed) -> None:
    status, body = _enc_keys(bed, "SAE-R1-A", "GW3", "SAE-R3-A")
    assert status == 401 and "keys" not in body


@pytest.mark.parametrize("entity", ["KME-R1-A", "KME-R2-B"])
def test_a_kme_certificate_is_not_an_sae_northbound(bed: ThreadedTestbed, entity: str) -> None:
    assert _enc_keys(bed, entity, "GW1", "SAE-R3-A")[0] == 401


def test_an_sae_certificate_cannot_speak_020(bed: ThreadedTestbed) -> None:
    response = bed.session("SAE-R2-A").post(
        f"{bed.url('GW2', 'etsi020')}/kmapi/v1/ext_keys/void",
        json={"key_ids": [], "initiator_sae_id": "SAE-R1-A", "target_sae_ids": ["SAE-R2-A"], "all_confirmation": True},
        timeout=TIMEOUT_S,
    )
    assert response.status_code == 401 and response.json()["type"].endswith("/unauthorized")


@pytest.mark.parametrize("entity", ["SAE-R1-A", "SAE-R2-A", "KME-R1-A"])
def test_only_gateways_may_call_the_grpc_services(bed: ThreadedTestbed, entity: str) -> None:
    hop = seal_by_hand(bed)  # a genuine frame from GW1, replayed by an SAE or a KME
    calls = [
        lambda channel: rpc.KeyRelayStub(channel).RelayFrame(hop.request, timeout=TIMEOUT_S),
        lambda channel: rpc.KeyRelayStub(channel).VoidKeys(
            pb.VoidKeysRequest(
                key_ids=[hop.key_id], initiator_sae_id="SAE-R1-A", target_sae_ids=["SAE-R2-A"], path=["GW1", "GW2"]
            ),
            timeout=TIMEOUT_S,
        ),
        lambda channel: rpc.QkdPoolSyncStub(channel).AnnounceKeys(
            pb.AnnounceKeysRequest(qkd_link_id="QKD-GW1-GW2", key_ids=[hop.key_id], sender_role="master"),
            timeout=TIMEOUT_S,
        ),
        lambda channel: rpc.EncapsulationKeysStub(channel).GetEncapsulationKey(
            pb.GetEncapsulationKeyRequest(), timeout=TIMEOUT_S
        ),
    ]
    with bed.grpc_channel("GW2", entity) as channel:
        for call in calls:
            with pytest.raises(grpc.RpcError) as refused:
                call(channel)
            assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert fetch(bed, "SAE-R2-A", "SAE-R1-A", hop.key_id).status_code == 400  # nothing was stored


def _relabelled(frame: HandSealed) -> pb.RelayFrameRequest:
    """GW1's frame with GW3 named as its sender and first hop, still under GW1's signature."""
    header = frame.message.header
    items = tuple(dataclasses.replace(item, path=("GW3", "GW2")) for item in header.items)
    message = dataclasses.replace(frame.message, header=dataclasses.replace(header, sender="GW3", items=items))
    return pb.RelayFrameRequest(sealed_frame=message.to_bytes())


def _own_frame_claiming_gw1(bed: ThreadedTestbed, frame: HandSealed) -> HandSealed:
    """A frame GW3 really seals for GW2 (qkd+pqc: their link is require-qkd) whose key claims to come from
    GW1 along [GW1, GW2]: GW1's transfer_id, key_ID and SAE pair, another key."""
    (genuine,) = frame.entries
    claim = dataclasses.replace(
        entry(genuine.path, genuine.target, key_id=genuine.key_id), transfer_id=genuine.transfer_id
    )
    return seal_by_hand(bed, [claim], sender="GW3", receiver="GW2", qkd=True)


def test_a_gateway_cannot_claim_another_as_sender(bed: ThreadedTestbed) -> None:
    frame = seal_by_hand(bed, sender="GW1", receiver="GW2", qkd=True)  # qkd+pqc, as GW3's link to GW2 requires
    # GW3 relays GW1's genuine frame as if it were GW1: the signed header names GW1, the certificate GW3
    refused = relay_as(bed, "GW3", "GW2", frame.request)
    assert refused.code is grpc.StatusCode.INVALID_ARGUMENT and "WrongSender" in refused.details, refused
    # GW3 names itself as sender and in the path: GW1's signature no longer verifies under GW3's identity
    refused = relay_as(bed, "GW3", "GW2", _relabelled(frame))
    assert refused.code is grpc.StatusCode.INVALID_ARGUMENT and "BadSignature" in refused.details, refused
    # GW3 signs a frame of its own whose key claims GW1 as its sender: that key is refused, as its outcome
    forged = _own_frame_claiming_gw1(bed, frame)
    [outcome] = forged.outcomes(relay_as(bed, "GW3", "GW2", forged.request))
    assert outcome.outcome is Outcome.FINAL and "is not from GW3 to GW2" in outcome.detail, outcome
    assert fetch(bed, "SAE-R2-A", "SAE-R1-A", frame.key_id).status_code == 400  # nothing was stored
    # the genuine sender is still served: the refusals did not burn the transfer
    assert deliver(bed, frame).outcome is Outcome.STORED
    delivered = fetch(bed, "SAE-R2-A", "SAE-R1-A", frame.key_id)
    assert delivered.status_code == 200


def test_a_refused_forgery_does_not_poison_the_genuine_transfer(bed: ThreadedTestbed) -> None:
    frame = seal_by_hand(bed, qkd=True)
    # each forgery carries GW1's frame_id, transfer_id or key_ID
    assert relay_as(bed, "GW3", "GW2", frame.request).code is grpc.StatusCode.INVALID_ARGUMENT
    assert relay_as(bed, "GW3", "GW2", _relabelled(frame)).code is grpc.StatusCode.INVALID_ARGUMENT
    forged = _own_frame_claiming_gw1(bed, frame)
    assert [o.outcome for o in forged.outcomes(relay_as(bed, "GW3", "GW2", forged.request))] == [Outcome.FINAL]
    assert deliver(bed, frame).outcome is Outcome.STORED
    delivered = fetch(bed, "SAE-R2-A", "SAE-R1-A", frame.key_id)
    assert delivered.status_code == 200
    assert base64.b64decode(delivered.json()["keys"][0]["key"]) == frame.entries[0].key  # GW1's key, not GW3's


def test_a_gateway_cannot_void_in_another_gateways_name(bed: ThreadedTestbed) -> None:
    hop = seal_by_hand(bed)
    assert deliver(bed, hop).outcome is Outcome.STORED
    with bed.grpc_channel("GW2", "GW3") as channel, pytest.raises(grpc.RpcError) as refused:
        rpc.KeyRelayStub(channel).VoidKeys(
            pb.VoidKeysRequest(
                key_ids=[hop.key_id], initiator_sae_id="SAE-R1-A", target_sae_ids=["SAE-R2-A"], path=["GW1", "GW2"]
            ),
            timeout=TIMEOUT_S,
        )
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert fetch(bed, "SAE-R2-A", "SAE-R1-A", hop.key_id).status_code == 200  # still there for its slave


def test_a_vendor_kme_cannot_void_keys_it_never_handed_over(bed: ThreadedTestbed) -> None:
    status, issued = _enc_keys(bed, "SAE-R1-A", "GW1", "SAE-R2-A")
    assert status == 200
    key_id = issued["keys"][0]["key_ID"]
    response = bed.session("KME-R1-A").post(
        f"{bed.url('GW2', 'etsi020')}/kmapi/v1/ext_keys/void",
        json={"key_ids": [key_id], "initiator_sae_id": "SAE-R1-A", "target_sae_ids": ["SAE-R2-A"]},
        timeout=TIMEOUT_S,
    )
    assert response.status_code in (400, 401)
    assert fetch(bed, "SAE-R2-A", "SAE-R1-A", key_id).status_code == 200
