"""Hypothesis against a real gateway's gRPC server (GW2) over mutual TLS, as its neighbour GW1.

Random and mutated RelayKeyRequest, VoidKeysRequest and AnnounceKeysRequest messages (sealed hops among
them: valid ones sealed with GW1's identity for GW2's current encapsulation key, then mutated) may only
be answered OK or with a status code from the documented set; never UNKNOWN or INTERNAL (an unhandled
exception in a handler), never slower than the bound. Afterwards the testbed still relays a key end to end.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.crypto import HopMode, HopRoute, QkdKey, seal_hop, system_clock_ms
from relay.crypto.identity import load_identity, load_trust_store
from relay.crypto.kem import PycaKemProvider
from relay.crypto.keyring import EncapsulationKeyAnnouncement
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc
from tests.support.mutations import mutations
from tests.support.threaded_testbed import ThreadedTestbed, assert_still_relays

DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
BOUND_S = 10.0  # a hop may be forwarded once (GW2 -> GW3) within the gateway's own hop timeout
GATEWAYS = ["GW1", "GW2", "GW3"]
SAES = ["SAE-R1-A", "SAE-R2-A", "SAE-R2-B", "SAE-R3-A", "SAE-R3-B"]

texts = st.one_of(
    st.sampled_from(GATEWAYS + SAES + ["", "GW4", "QKD-GW1-GW2", "master", "slave"]), st.text(max_size=80)
)
key_ids = st.one_of(st.uuids().map(str), st.text(max_size=40))


def _sealed_for_gw2(bed: ThreadedTestbed, mode: HopMode, transfer_id: bytes, hop: int = 0) -> bytes:
    """A hop GW1 could really send GW2: GW1's ML-DSA identity, GW2's ek as GW2 serves it over gRPC."""
    keys = bed.testbed.keys
    with bed.grpc_channel("GW2", "GW1") as channel:
        announcement = (
            rpc.EncapsulationKeysStub(channel)
            .GetEncapsulationKey(pb.GetEncapsulationKeyRequest(), timeout=BOUND_S)
            .announcement
        )
    recipient = EncapsulationKeyAnnouncement.from_bytes(announcement).verify(
        load_trust_store(keys.identities), system_clock_ms()
    )
    qkd_key = QkdKey(str(uuid.uuid4()), b"q" * 32) if mode is HopMode.QKD_PQC else None
    return seal_hop(
        b"K" * 32,
        route=HopRoute(transfer_id, hop, str(uuid.uuid4())),
        recipient=recipient,
        identity=load_identity("GW1", keys.identities),
        mode=mode,
        qkd_key=qkd_key,
        kem=PycaKemProvider(),
        clock=system_clock_ms,
    ).message.to_bytes()


@st.composite
def relay_requests(draw: st.DrawFn, valid_sealed: list[bytes]) -> pb.RelayKeyRequest:
    """Most consistent up to the sealed hop (so they reach open_hop), the rest random throughout."""
    sealed = draw(
        st.one_of(
            st.binary(max_size=6000),
            st.sampled_from(valid_sealed),
            st.sampled_from(valid_sealed).flatmap(mutations),
        )
    )
    if draw(st.integers(min_value=0, max_value=3)):
        path, target = draw(
            st.sampled_from(
                [(["GW1", "GW2"], "SAE-R2-A"), (["GW1", "GW2"], "SAE-R2-B"), (["GW1", "GW2", "GW3"], "SAE-R3-A")]
            )
        )
        return pb.RelayKeyRequest(
            transfer_id=draw(st.uuids()).bytes,
            path=path,
            hop=0,
            initiator_sae_id="SAE-R1-A",
            target_sae_ids=[target],
            sealed_hop=sealed,
            no_degrade=draw(st.booleans()),
        )
    return pb.RelayKeyRequest(
        transfer_id=draw(st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=40))),
        path=draw(st.lists(texts, max_size=5)),
        hop=draw(st.one_of(st.just(0), st.integers(min_value=0, max_value=2**32 - 1))),
        initiator_sae_id=draw(texts),
        target_sae_ids=draw(st.lists(st.one_of(st.sampled_from(SAES), texts), max_size=3)),
        sealed_hop=sealed,
        extension_optional_json=draw(st.one_of(st.just(""), st.text(max_size=60), st.just('{"E1_x": 1}'))),
        no_degrade=draw(st.booleans()),
    )


void_requests = st.builds(
    pb.VoidKeysRequest,
    key_ids=st.lists(key_ids, max_size=5),
    initiator_sae_id=texts,
    target_sae_ids=st.lists(st.one_of(st.sampled_from(SAES), texts), max_size=3),
    path=st.one_of(
        st.sampled_from([["GW1", "GW2"], ["GW1", "GW2", "GW3"], ["GW2", "GW1"]]), st.lists(texts, max_size=4)
    ),
    hop=st.one_of(st.integers(min_value=0, max_value=2), st.integers(min_value=0, max_value=2**32 - 1)),
    nonce=st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40)),
    issued_at_ms=st.one_of(st.just(0), st.integers(min_value=0, max_value=2**64 - 1)),
    signature=st.binary(max_size=80),
)
announce_requests = st.builds(
    pb.AnnounceKeysRequest,
    qkd_link_id=st.one_of(st.sampled_from(["QKD-GW1-GW2", "QKD-GW2-GW3"]), texts),
    key_ids=st.lists(key_ids, max_size=6),
    sender_role=st.one_of(st.sampled_from(["master", "slave"]), texts),
)


def fuzz(bed: ThreadedTestbed, examples: int) -> Counter[str]:
    valid = [_sealed_for_gw2(bed, mode, uuid.uuid4().bytes) for mode in HopMode for _ in range(2)]
    seen: Counter[str] = Counter()
    with bed.grpc_channel("GW2", "GW1") as channel:
        relay, sync = rpc.KeyRelayStub(channel), rpc.QkdPoolSyncStub(channel)

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(
            call=st.one_of(
                relay_requests(valid).map(lambda r: ("RelayKey", relay.RelayKey, r)),
                void_requests.map(lambda r: ("VoidKeys", relay.VoidKeys, r)),
                announce_requests.map(lambda r: ("AnnounceKeys", sync.AnnounceKeys, r)),
            )
        )
        def run(call: tuple[str, Any, Any]) -> None:
            name, method, request = call
            details = ""
            try:
                method(request, timeout=BOUND_S)
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details()
                assert code is not grpc.StatusCode.DEADLINE_EXCEEDED, f"{name} hung: {request!r}"[:2000]
            assert code in DOCUMENTED, f"{name} -> {code.name} {details}: {request!r}"[:2000]
            seen[f"{name}:{code.name}"] += 1

        run()
    return seen


def test_grpc_messages_get_documented_status_codes_only(bed: ThreadedTestbed) -> None:
    seen = fuzz(bed, 150)
    print(sorted(seen.items()))
    assert any(name.startswith("RelayKey:INVALID_ARGUMENT") for name in seen), seen
    assert any(name.startswith("RelayKey:PERMISSION_DENIED") for name in seen), seen
    assert_still_relays(bed)


@pytest.mark.slow
def test_grpc_messages_long(bed: ThreadedTestbed) -> None:
    fuzz(bed, 2000)
    assert_still_relays(bed)
