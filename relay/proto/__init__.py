"""Generated gRPC code for ``protos/`` (regenerate with ``python -m relay.proto.generate``; never edit)."""
