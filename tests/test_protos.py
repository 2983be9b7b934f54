"""The committed gRPC code is exactly what ``python -m relay.proto.generate`` produces from ``protos/``."""

from __future__ import annotations

from relay.proto.generate import proto_files, stale_files


def test_generated_code_is_current() -> None:
    assert proto_files(), "no .proto files found"
    assert stale_files() == [], "run `python -m relay.proto.generate` and commit the result"


def test_generated_modules_import_inside_the_package() -> None:
    from relay.proto.qkdrelay.v1 import relay_pb2, relay_pb2_grpc

    request = relay_pb2.RelayFrameRequest(sealed_frame=b"frame")
    assert relay_pb2.RelayFrameRequest.FromString(request.SerializeToString()) == request
    assert hasattr(relay_pb2_grpc, "KeyRelayServicer")
