"""Nobody acts under another's identity: SAEs, gateways and KMEs are told apart by certificate alone."""

from __future__ import annotations

import grpc
import pytest

from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc
from tests.support.hand_sealed_hops import TIMEOUT_S, enc_keys, fetch, relay_as, seal_by_hand
from tests.support.threaded_testbed import ThreadedTestbed


def _with(request: pb.RelayKeyRequest, **changes: object) -> pb.RelayKeyRequest:
    copy = pb.RelayKeyRequest()
    copy.CopyFrom(request)
    for name, value in changes.items():
        if name == "path":
            del copy.path[:]
            copy.path.extend(value)  # type: ignore[arg-type]
        else:
            setattr(copy, name, value)
    return copy


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
    hop = seal_by_hand(bed)  # a genuine hop from GW1, replayed by an SAE or a KME
    calls = [
        lambda channel: rpc.KeyRelayStub(channel).RelayKey(hop.request, timeout=TIMEOUT_S),
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


def test_a_gateway_cannot_claim_another_as_sender(bed: ThreadedTestbed) -> None:
    # GW3 relays GW1's genuine hop as if it were GW1 (the path names GW1 as the sender of hop 0)
    hop = seal_by_hand(bed, sender="GW1", receiver="GW2")
    code, details = relay_as(bed, "GW3", "GW2", hop.request)
    assert code is grpc.StatusCode.PERMISSION_DENIED, details
    # GW3 names itself in the path, but the signed header still says GW1: WrongSender
    forwarded = _with(hop.request, path=["GW3", "GW2"])
    code, details = relay_as(bed, "GW3", "GW2", forwarded)
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "WrongSender" in details, details
    assert fetch(bed, "SAE-R2-A", "SAE-R1-A", hop.key_id).status_code == 400  # nothing was stored
    # the genuine sender is still served: the refusals did not burn the transfer
    assert relay_as(bed, "GW1", "GW2", hop.request)[0] is grpc.StatusCode.OK
    delivered = fetch(bed, "SAE-R2-A", "SAE-R1-A", hop.key_id)
    assert delivered.status_code == 200


def test_a_refused_forgery_does_not_poison_the_genuine_transfer(bed: ThreadedTestbed) -> None:
    hop = seal_by_hand(bed)
    forged = _with(hop.request, path=["GW3", "GW2"])  # same outer transfer_id as GW1's genuine request
    assert relay_as(bed, "GW3", "GW2", forged)[0] is grpc.StatusCode.INVALID_ARGUMENT
    assert relay_as(bed, "GW1", "GW2", hop.request)[0] is grpc.StatusCode.OK


def test_a_gateway_cannot_void_in_another_gateways_name(bed: ThreadedTestbed) -> None:
    hop = seal_by_hand(bed)
    assert relay_as(bed, "GW1", "GW2", hop.request)[0] is grpc.StatusCode.OK
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
