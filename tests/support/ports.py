"""Free loopback ports, for servers a test starts beside anything else running on the machine."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on right now (someone may take it before the caller binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
