"""Hypothesis against a real gateway's gRPC server (GW2) over mutual TLS, as its neighbour GW1.

Random and mutated RelayFrameRequest, VoidKeysRequest and AnnounceKeysRequest messages may only be
answered OK or with a status code from the documented set; never UNKNOWN or INTERNAL (an unhandled
exception in a handler), never slower than the bound. Sealed frames among them: valid ones GW1 really
could send (pqc-only and qkd+pqc, sealed by hand with GW1's identity for GW2's current encapsulation
key), those mutated, and fresh validly signed frames whose keys' routes, SAEs and key_IDs are drawn at
random (so they pass the signature and reach each key's own checks). Every OK answer carries one outcome
per key. Afterwards the testbed still relays a key end to end.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st

from relay.crypto import FrameEntry, SealedFrame
from relay.gateway.hops import decode_outcomes
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc
from tests.support.hand_sealed_hops import entry, seal_by_hand
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
BOUND_S = 10.0  # a frame may be forwarded once (GW2 -> GW3) within the gateway's own hop timeout
GATEWAYS = ["GW1", "GW2", "GW3"]
SAES = ["SAE-R1-A", "SAE-R2-A", "SAE-R2-B", "SAE-R3-A", "SAE-R3-B"]
ROUTES = [(("GW1", "GW2"), "SAE-R2-A"), (("GW1", "GW2", "GW3"), "SAE-R3-A"), (("GW1", "GW2", "GW3"), "SAE-R3-B")]

texts = st.one_of(
    st.sampled_from(GATEWAYS + SAES + ["", "GW4", "QKD-GW1-GW2", "master", "slave"]), st.text(max_size=80)
)
key_ids = st.one_of(st.uuids().map(str), st.text(max_size=40))


@st.composite
def frame_entries(draw: st.DrawFn) -> FrameEntry:
    """A key on a route GW2 serves, or one whose every signed fact is drawn (seal refuses what cannot encode)."""
    if draw(st.booleans()):
        path, target = draw(st.sampled_from(ROUTES))
        return entry(path, target, key_id=draw(st.one_of(st.none(), st.uuids().map(str))))
    random = entry(
        draw(st.lists(st.one_of(st.sampled_from(GATEWAYS), texts), min_size=2, max_size=4)),
        draw(st.one_of(st.sampled_from(SAES), texts)),
        initiator=draw(texts),
        hop=draw(st.integers(min_value=0, max_value=3)),
        key_id=draw(key_ids) or None,
        size=draw(st.integers(min_value=1, max_value=64)),
    )
    return dataclasses.replace(
        random,
        extension_json=draw(st.one_of(st.just(""), st.text(max_size=60), st.just('{"E1_x": 1}'))),
        no_degrade=draw(st.booleans()),
    )


@st.composite
def relay_requests(
    draw: st.DrawFn, valid_sealed: list[bytes], seal: Callable[[list[FrameEntry]], bytes]
) -> pb.RelayFrameRequest:
    """Random bytes, a valid frame, a mutated one, or a fresh validly signed frame of drawn keys."""
    kind = draw(st.sampled_from(["random", "valid", "mutated", "drawn"]))
    if kind == "random":
        sealed = draw(st.binary(max_size=6000))
    elif kind == "valid":
        sealed = draw(st.sampled_from(valid_sealed))
    elif kind == "mutated":
        sealed = draw(st.sampled_from(valid_sealed).flatmap(mutations))
    else:
        sealed = seal(draw(st.lists(frame_entries(), min_size=1, max_size=3)))
    return pb.RelayFrameRequest(sealed_frame=sealed)


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
    valid = [
        seal_by_hand(bed, [entry(*route)], qkd=qkd).message.to_bytes() for route in ROUTES for qkd in (False, True)
    ]
    # Always among the examples, whatever the draws: a frame with one key GW2 must refuse on its own checks
    # (its target is not served by the path's last gateway) beside one it stores.
    mixed = seal_by_hand(bed, [entry(("GW1", "GW2"), "SAE-R3-A"), entry(*ROUTES[0])]).message.to_bytes()

    def seal(entries: list[FrameEntry]) -> bytes:
        try:
            return seal_by_hand(bed, entries).message.to_bytes()
        except ValueError:  # a header that cannot be encoded (an empty SAE ID, a repeated transfer)
            reject()

    seen: Counter[str] = Counter()
    with bed.grpc_channel("GW2", "GW1") as channel:
        relay, sync = rpc.KeyRelayStub(channel), rpc.QkdPoolSyncStub(channel)

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @example(call=("RelayFrame", relay.RelayFrame, pb.RelayFrameRequest(sealed_frame=mixed)))
        @given(
            call=st.one_of(
                relay_requests(valid, seal).map(lambda r: ("RelayFrame", relay.RelayFrame, r)),
                void_requests.map(lambda r: ("VoidKeys", relay.VoidKeys, r)),
                announce_requests.map(lambda r: ("AnnounceKeys", sync.AnnounceKeys, r)),
            )
        )
        def run(call: tuple[str, Any, Any]) -> None:
            name, method, request = call
            details = ""
            try:
                answer = method(request, timeout=BOUND_S)
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details()
                assert code is not grpc.StatusCode.DEADLINE_EXCEEDED, f"{name} hung: {request!r}"[:2000]
            assert code in DOCUMENTED, f"{name} -> {code.name} {details}: {request!r}"[:2000]
            seen[f"{name}:{code.name}"] += 1
            if name == "RelayFrame" and code is grpc.StatusCode.OK:  # one outcome per key, in order
                keys = len(SealedFrame.from_bytes(request.sealed_frame).header.items)
                for outcome in decode_outcomes(answer.outcomes, keys):
                    seen[f"{name}:OK:{outcome.outcome.name}"] += 1

        run()
    return seen


def test_grpc_messages_get_documented_status_codes_only(bed: ThreadedTestbed) -> None:
    seen = fuzz(bed, 150)
    print(sorted(seen.items()))
    assert seen["RelayFrame:INVALID_ARGUMENT"], seen  # a frame refused whole
    assert seen["RelayFrame:OK:FINAL"], seen  # a key of an answered frame refused on its own checks
    assert seen["RelayFrame:OK:STORED"], seen
    assert_still_relays(bed)


@pytest.mark.slow
def test_grpc_messages_long(bed: ThreadedTestbed) -> None:
    fuzz(bed, 2000)
    assert_still_relays(bed)
