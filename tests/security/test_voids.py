"""Voids are signed by the path's origin, scoped to the path that carried the keys, accepted once, and
leave tombstones: the attacks of issue 12 section 1, replayed against a running testbed."""

from __future__ import annotations

import grpc

from relay.crypto import system_clock_ms
from relay.gateway.hops import Outcome
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from tests.support.hand_sealed_hops import deliver, enc_keys, fetch, seal_by_hand, void_as, void_by_hand
from tests.support.threaded_testbed import ThreadedTestbed

STALE_MS = 10 * 60 * 1000


def _relayed_by_hand(bed: ThreadedTestbed) -> str:
    """A key GW1 relayed to GW2 for SAE-R2-A along [GW1, GW2]; its key_ID."""
    hop = seal_by_hand(bed)
    assert deliver(bed, hop).outcome is Outcome.STORED
    return hop.key_id


def _held_by_master(bed: ThreadedTestbed, slave: str = "SAE-R3-A") -> str:
    """A key SAE-R1-A got from enc_keys at GW1 for ``slave``; its key_ID."""
    response = enc_keys(bed, "SAE-R1-A", "GW1", slave)
    assert response.status_code == 200, response.text
    return str(response.json()["keys"][0]["key_ID"])


def test_the_forged_void_of_issue_12_is_refused_and_voids_nothing(bed: ThreadedTestbed) -> None:
    held = _held_by_master(bed)
    forged = pb.VoidKeysRequest(
        key_ids=[], initiator_sae_id="SAE-R1-A", target_sae_ids=["SAE-R3-A"], path=["GW2", "GW3"], hop=0
    )
    code, details, voided = void_as(bed, "GW2", "GW3", forged)  # unsigned, as the review sent it
    assert code is grpc.StatusCode.INVALID_ARGUMENT and voided == [], details
    # GW2 signing its own path: "all" of SAE-R1-A's keys only from GW1, its home
    signed = void_by_hand(bed, [], ["GW2", "GW3"], initiator="SAE-R1-A", target="SAE-R3-A")
    code, details, _ = void_as(bed, "GW2", "GW3", signed)
    assert code is grpc.StatusCode.PERMISSION_DENIED and "GW1" in details, details
    # naming the key: accepted, but the key did not come along [GW2, GW3]
    named = void_by_hand(bed, [held], ["GW2", "GW3"], initiator="SAE-R1-A", target="SAE-R3-A")
    assert void_as(bed, "GW2", "GW3", named) == (grpc.StatusCode.OK, "", [])
    fetched = fetch(bed, "SAE-R3-A", "SAE-R1-A", held)
    assert fetched.status_code == 200, fetched.text  # the master's key is still there for its slave


def test_a_void_signed_by_a_gateway_other_than_the_origin_is_refused(bed: ThreadedTestbed) -> None:
    held = _held_by_master(bed)
    for path in (["GW1", "GW2", "GW3"], ["GW1", "GW3"]):  # whichever route the key took
        request = void_by_hand(
            bed, [held], path, signer="GW2", hop=len(path) - 2, initiator="SAE-R1-A", target="SAE-R3-A"
        )
        code, details, _ = void_as(bed, path[-2], "GW3", request)
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "BadSignature" in details, details
    assert fetch(bed, "SAE-R3-A", "SAE-R1-A", held).status_code == 200


def test_a_void_with_a_tampered_field_is_refused(bed: ThreadedTestbed) -> None:
    key_id, other = _relayed_by_hand(bed), _relayed_by_hand(bed)
    genuine = void_by_hand(bed, [other], ["GW1", "GW2"])
    tamperings = {
        "key_ids": lambda request: request.key_ids.__setitem__(0, key_id),
        "all": lambda request: request.key_ids.pop(),
        "initiator": lambda request: setattr(request, "initiator_sae_id", "SAE-R1-B"),
        "nonce": lambda request: setattr(request, "nonce", bytes(32)),
        "issued_at_ms": lambda request: setattr(request, "issued_at_ms", request.issued_at_ms - 1),
        "signature": lambda request: setattr(request, "signature", genuine.signature[:-1] + b"\x00"),
    }
    for name, tamper in tamperings.items():
        request = pb.VoidKeysRequest()
        request.CopyFrom(genuine)
        tamper(request)
        code, details, voided = void_as(bed, "GW1", "GW2", request)
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "BadSignature" in details, (name, details)
    for kept in (key_id, other):
        assert fetch(bed, "SAE-R2-A", "SAE-R1-A", kept).status_code == 200


def test_a_genuine_void_works_once_and_its_replay_voids_nothing_new(bed: ThreadedTestbed) -> None:
    named = _relayed_by_hand(bed)
    void = void_by_hand(bed, [named], ["GW1", "GW2"])
    assert void_as(bed, "GW1", "GW2", void) == (grpc.StatusCode.OK, "", [named])
    assert fetch(bed, "SAE-R2-A", "SAE-R1-A", named).status_code == 400
    code, details, _ = void_as(bed, "GW1", "GW2", void)
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "ReplayedMessage" in details, details

    first = _relayed_by_hand(bed)
    void_all = void_by_hand(bed, [], ["GW1", "GW2"])
    assert void_as(bed, "GW1", "GW2", void_all) == (grpc.StatusCode.OK, "", [first])
    later = _relayed_by_hand(bed)
    code, details, _ = void_as(bed, "GW1", "GW2", void_all)  # a recorded "all" void, replayed
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "ReplayedMessage" in details, details
    fetched = fetch(bed, "SAE-R2-A", "SAE-R1-A", later)
    assert fetched.status_code == 200, fetched.text


def test_a_stale_void_is_refused(bed: ThreadedTestbed) -> None:
    key_id = _relayed_by_hand(bed)
    stale = void_by_hand(bed, [key_id], ["GW1", "GW2"], clock=lambda: system_clock_ms() - STALE_MS)
    code, details, _ = void_as(bed, "GW1", "GW2", stale)
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "StaleMessage" in details, details
    assert fetch(bed, "SAE-R2-A", "SAE-R1-A", key_id).status_code == 200


def test_a_forged_void_stops_at_the_first_gateway_it_reaches(bed: ThreadedTestbed) -> None:
    held = _held_by_master(bed)
    forged = void_by_hand(bed, [held], ["GW1", "GW2", "GW3"], signer="GW3", initiator="SAE-R1-A", target="SAE-R3-A")
    code, details, _ = void_as(bed, "GW1", "GW2", forged)
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "BadSignature" in details, details
    assert fetch(bed, "SAE-R3-A", "SAE-R1-A", held).status_code == 200


def test_a_late_hop_cannot_bring_back_a_voided_key(bed: ThreadedTestbed) -> None:
    hop = seal_by_hand(bed)  # sealed, still "in flight" when its transfer is voided
    assert void_as(bed, "GW1", "GW2", void_by_hand(bed, [hop.key_id], ["GW1", "GW2"])) == (
        grpc.StatusCode.OK,
        "",
        [],  # nothing there to void yet: tombstoned
    )
    outcome = deliver(bed, hop)  # the frame is answered; its key's own outcome is the refusal (ABORTED once)
    assert outcome.outcome is Outcome.RETRYABLE and "already used" in outcome.detail, outcome
    assert fetch(bed, "SAE-R2-A", "SAE-R1-A", hop.key_id).status_code == 400


def _foreign_fetch(bed: ThreadedTestbed, key_id: str) -> int:
    """SAE-X-A's dec_keys at its own (foreign) KMS for a key SAE-R1-A handed it; the HTTP status."""
    site = bed.testbed.kms["KMS-X"].kme_sites["KME-X"]
    url = f"https://localhost:{site.port}/api/v1/keys/SAE-R1-A/dec_keys"
    return bed.session("SAE-X-A").get(url, params={"key_ID": key_id}, timeout=10).status_code


def test_a_void_across_the_border_is_verified_like_any_other(bed: ThreadedTestbed) -> None:
    """Keys handed to a foreign KMS are voided there only by a void their origin signed, once: GW2 cannot
    void, at KMS-X, a key SAE-R1-A holds; GW1's genuine void works, and its replay voids nothing."""
    held, voidable = _held_by_master(bed, "SAE-X-A"), _held_by_master(bed, "SAE-X-A")
    unsigned = pb.VoidKeysRequest(  # in GW1's name, which GW2 cannot sign
        key_ids=[held], initiator_sae_id="SAE-R1-A", target_sae_ids=["SAE-X-A"], path=["GW1", "GW2", "GW3"], hop=1
    )
    code, details, _ = void_as(bed, "GW2", "GW3", unsigned)
    assert code is grpc.StatusCode.INVALID_ARGUMENT, details
    by_gw2 = void_by_hand(bed, [held], ["GW2", "GW3"], initiator="SAE-R1-A", target="SAE-X-A")
    code, details, _ = void_as(bed, "GW2", "GW3", by_gw2)
    assert code is grpc.StatusCode.PERMISSION_DENIED and "GW1" in details, details
    everything = void_by_hand(bed, [], ["GW1", "GW2", "GW3"], hop=1, initiator="SAE-R1-A", target="SAE-X-A")
    code, details, _ = void_as(bed, "GW2", "GW3", everything)
    assert code is grpc.StatusCode.PERMISSION_DENIED, details
    assert _foreign_fetch(bed, held) == 200  # the master's key reached its slave in the other domain

    genuine = void_by_hand(bed, [voidable], ["GW1", "GW2", "GW3"], hop=1, initiator="SAE-R1-A", target="SAE-X-A")
    assert void_as(bed, "GW2", "GW3", genuine)[0] is grpc.StatusCode.OK
    code, details, _ = void_as(bed, "GW2", "GW3", genuine)
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "Replayed" in details, details
    assert _foreign_fetch(bed, voidable) != 200  # voided at KMS-X
