"""Client certificates from another CA are refused by every listener of a gateway (014, 020, gRPC)."""

from __future__ import annotations

import grpc
import pytest
import requests

from relay.pki.layout import KeyDirectory
from relay.proto.qkdrelay.v1 import relay_pb2 as pb
from relay.proto.qkdrelay.v1 import relay_pb2_grpc as rpc
from tests.support.threaded_testbed import ThreadedTestbed

TIMEOUT_S = 10.0


@pytest.mark.parametrize(
    ("site", "entity", "path"),
    [
        ("etsi014", "SAE-R2-A", "/api/v1/keys/SAE-R3-A/status"),
        ("etsi014", "SAE-R2-A", "/openapi.json"),
        ("etsi020", "GW1", "/kmapi/versions"),
        ("etsi020", "GW3", "/openapi.json"),
    ],
)
def test_http_listeners_refuse_a_foreign_ca(
    bed: ThreadedTestbed, foreign_keys: KeyDirectory, site: str, entity: str, path: str
) -> None:
    url = bed.url("GW2", site) + path
    assert bed.session(entity).get(url, timeout=TIMEOUT_S).status_code == 200  # the control: our CA works
    with pytest.raises(requests.exceptions.ConnectionError):  # SSLError is a ConnectionError
        bed.session(entity, foreign_keys).get(url, timeout=TIMEOUT_S)
    anonymous = requests.Session()
    anonymous.trust_env = False
    with pytest.raises(requests.exceptions.ConnectionError):
        anonymous.get(url, verify=str(bed.testbed.keys.ca.cert), timeout=TIMEOUT_S)


def test_grpc_listener_refuses_a_foreign_ca(bed: ThreadedTestbed, foreign_keys: KeyDirectory) -> None:
    with bed.grpc_channel("GW2", "GW1") as channel:  # the control
        assert (
            rpc.EncapsulationKeysStub(channel)
            .GetEncapsulationKey(pb.GetEncapsulationKeyRequest(), timeout=TIMEOUT_S)
            .announcement
        )
    with bed.grpc_channel("GW2", "GW1", foreign_keys) as channel, pytest.raises(grpc.RpcError) as refused:
        rpc.EncapsulationKeysStub(channel).GetEncapsulationKey(pb.GetEncapsulationKeyRequest(), timeout=TIMEOUT_S)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE  # the TLS handshake never completes
    with bed.grpc_channel("GW2", "GW1", foreign_keys) as channel, pytest.raises(grpc.RpcError) as relay_refused:
        rpc.KeyRelayStub(channel).RelayFrame(pb.RelayFrameRequest(sealed_frame=b"\x00" * 64), timeout=TIMEOUT_S)
    assert relay_refused.value.code() is grpc.StatusCode.UNAVAILABLE
