"""A gateway's gRPC server face in a child process, for tests that freeze it with real signals.

``python -m tests.support.grpc_child KEYS_ROOT GATEWAY_ID [--keepalive TIME_S TIMEOUT_S] [--grpc-defaults]``
serves the standard health service (SERVING) with the gateway's certificate and the gateway's keepalive
server options (or grpc's defaults with ``--grpc-defaults``), and prints its port on one line. SIGSTOP
then freezes it whole, C core included: what a frozen gateway looks like from its neighbours.

:func:`child_server` runs it and yields (process, port).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from relay.gateway.grpc_tls import server_credentials
from relay.gateway.keepalive import KeepaliveSettings
from relay.pki.layout import KeyDirectory


async def _serve(keys: KeyDirectory, gateway_id: str, options: list[tuple[str, int]]) -> None:
    server = grpc.aio.server(options=options)
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(keys, gateway_id))
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("keys_root", type=Path)
    parser.add_argument("gateway_id")
    parser.add_argument("--keepalive", nargs=2, type=float, metavar=("TIME_S", "TIMEOUT_S"))
    parser.add_argument("--grpc-defaults", action="store_true", help="grpc's own server options, not ours")
    args = parser.parse_args()
    keepalive = KeepaliveSettings(*args.keepalive) if args.keepalive else KeepaliveSettings()
    options = [] if args.grpc_defaults else keepalive.server_options()
    asyncio.run(_serve(KeyDirectory(args.keys_root), args.gateway_id, options))


@contextmanager
def child_server(keys: KeyDirectory, gateway_id: str, *extra: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.grpc_child", str(keys.root), gateway_id, *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield process, port
    finally:
        process.kill()
        process.wait()


if __name__ == "__main__":
    main()
