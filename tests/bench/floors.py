"""The floors the relay benchmark sets its figures beside, measured in the same run on the same machine.

- empty gRPC unary calls: a server in a process of its own (so it does not share the load generator's
  GIL), built as a gateway builds its server (:func:`relay.gateway.grpc_tls.gateway_server`: mutual TLS
  1.3 with the testbed's gateway certificates) with one method that answers an empty message; calls/s
  at 64 concurrent callers on one channel (a gateway's channel to one neighbour), and the mean round
  trip at one caller; beside it, the same server echoing messages on one long-lived bidirectional
  stream (what a streamed frame transport would be), messages/s with 64 in flight and the round trip
  with one (the figures behind sending frames as unary calls);
- ML-KEM-768 encapsulations (parsing the encapsulation key from bytes, as every sender must) and
  decapsulations, ML-DSA-65 signatures and verifications of a 1 KiB message (a frame's transcript is
  hashed once, so its size hardly matters) per second: suite A, what the gateways use;
- the Redis round trip: mean PING from one client to a testbed's region Redis.

Run as ``python tests/bench/floors.py serve --keys DIR --id GW2 --port N`` it is that gRPC server
(:func:`grpc_floor` starts it so).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import redis

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from relay.crypto.suites import SUITE_A
from relay.gateway.grpc_tls import channel_credentials, channel_options, gateway_server, server_credentials
from relay.loadtest.topologies import free_ports
from relay.pki.layout import KeyDirectory
from relay.pki.redis_access import ADMIN_USER, read_credentials
from tests.bench.bench_crypto import raw_costs

SERVICE = "qkdrelay.bench.Empty"
METHOD = f"/{SERVICE}/Call"
STREAM_METHOD = f"/{SERVICE}/Echo"
READY = "ready"


@dataclass(frozen=True)
class Floors:
    grpc_callers: int
    grpc_calls_per_s: float  # empty unary calls at ``grpc_callers`` concurrent callers
    grpc_round_trip_ms: float  # one caller, mean
    stream_messages_per_s: float  # echoed on one bidirectional stream, ``grpc_callers`` in flight
    stream_round_trip_ms: float  # one in flight, mean
    kem_us: dict[str, float]  # "encaps", "decaps": microseconds per operation
    dsa_us: dict[str, float]  # "sign", "verify"
    redis_round_trip_ms: float

    @property
    def hop_parts_ms(self) -> float:
        """What one hop cannot do without: one gRPC round trip, one signature and its verification, one
        encapsulation and its decapsulation."""
        return self.grpc_round_trip_ms + sum({**self.kem_us, **self.dsa_us}.values()) / 1000

    def lines(self) -> list[str]:
        def per_s(us: float) -> str:
            return f"{1e6 / us:,.0f}/s ({us / 1000:.3f} ms)"

        return [
            f"- empty gRPC unary calls (mutual TLS 1.3, server in its own process): {self.grpc_calls_per_s:,.0f}/s "
            f"at {self.grpc_callers} concurrent callers; round trip at one caller {self.grpc_round_trip_ms:.3f} ms",
            f"- the same server echoing on one bidirectional stream: {self.stream_messages_per_s:,.0f} messages/s "
            f"with {self.grpc_callers} in flight; round trip with one in flight {self.stream_round_trip_ms:.3f} ms",
            f"- ML-KEM-768 encaps {per_s(self.kem_us['encaps'])}, decaps {per_s(self.kem_us['decaps'])}; "
            f"ML-DSA-65 sign {per_s(self.dsa_us['sign'])}, verify {per_s(self.dsa_us['verify'])}",
            f"- Redis round trip (PING, one client): {self.redis_round_trip_ms:.3f} ms",
            f"- one hop's parts (gRPC round trip + sign + verify + encaps + decaps): {self.hop_parts_ms:.2f} ms",
        ]


def measure(keys: KeyDirectory, redis_port: int, callers: int = 64, seconds: float = 3.0) -> Floors:
    calls_per_s, round_trip_ms, stream_per_s, stream_round_trip_ms = grpc_floor(keys, callers, seconds)
    costs = raw_costs(SUITE_A, seconds / 3)
    return Floors(
        callers,
        calls_per_s,
        round_trip_ms,
        stream_per_s,
        stream_round_trip_ms,
        {name: costs[name] for name in ("encaps", "decaps")},
        {name: costs[name] for name in ("sign", "verify")},
        redis_floor(keys, redis_port, seconds / 3),
    )


def grpc_floor(keys: KeyDirectory, callers: int, seconds: float) -> tuple[float, float, float, float]:
    """Unary calls/s at ``callers`` and mean round-trip ms at one caller, then stream messages/s with
    ``callers`` in flight and the round trip with one, against :func:`serve` in a subprocess."""
    (port,) = free_ports(1)
    command = [sys.executable, __file__, "serve", "--keys", str(keys.root), "--id", "GW2", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != READY:
            raise RuntimeError("the empty gRPC server did not start")
        return asyncio.run(_call(keys, port, callers, seconds))
    finally:
        server.terminate()
        server.wait(10)


async def _call(keys: KeyDirectory, port: int, callers: int, seconds: float) -> tuple[float, float, float, float]:
    target = f"127.0.0.1:{port}"
    async with grpc.aio.secure_channel(target, channel_credentials(keys, "GW1"), channel_options("GW2")) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        await call(b"")  # connect and handshake before counting

        async def caller(deadline: float) -> int:
            count = 0
            while time.perf_counter() < deadline:
                await call(b"")
                count += 1
            return count

        start = time.perf_counter()
        counts = await asyncio.gather(*(caller(start + seconds) for _ in range(callers)))
        calls_per_s = sum(counts) / (time.perf_counter() - start)
        start = time.perf_counter()
        (single,) = await asyncio.gather(caller(start + seconds / 3))
        round_trip_ms = (time.perf_counter() - start) / single * 1000
        stream_per_s = await _echo(channel, callers, seconds)
        stream_round_trip_ms = 1000 / await _echo(channel, 1, seconds / 3)
    return calls_per_s, round_trip_ms, stream_per_s, stream_round_trip_ms


async def _echo(channel: grpc.aio.Channel, in_flight: int, seconds: float) -> float:
    """Messages/s echoed on one bidirectional stream, keeping ``in_flight`` of them on their way."""
    stream: grpc.aio.StreamStreamCall[bytes, bytes] = channel.stream_stream(STREAM_METHOD)()
    for _ in range(in_flight):
        await stream.write(b"")
    count, start = 0, time.perf_counter()
    while time.perf_counter() < start + seconds:
        await stream.read()
        count += 1
        await stream.write(b"")
    elapsed = time.perf_counter() - start
    await stream.done_writing()
    while await stream.read() is not grpc.aio.EOF:  # drain the echoes still in flight
        pass
    return count / elapsed


def redis_floor(keys: KeyDirectory, port: int, seconds: float) -> float:
    """Mean PING round trip in ms from one synchronous client."""
    credentials = read_credentials(keys, ADMIN_USER)
    client = redis.Redis(port=port, username=credentials.username, password=credentials.password)
    try:
        client.ping()
        count, start = 0, time.perf_counter()
        while time.perf_counter() < start + seconds:
            client.ping()
            count += 1
        return (time.perf_counter() - start) / count * 1000
    finally:
        client.close()


async def serve(keys: KeyDirectory, gateway_id: str, port: int) -> None:
    """Answer every call of :data:`METHOD` with an empty message and echo every message of a
    :data:`STREAM_METHOD` stream, until terminated."""

    async def empty(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return b""

    async def echo(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request

    server = gateway_server()
    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        "Call": grpc.unary_unary_rpc_method_handler(empty),
        "Echo": grpc.stream_stream_rpc_method_handler(echo),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_secure_port(f"127.0.0.1:{port}", server_credentials(keys, gateway_id))
    await server.start()
    print(READY, flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description="The empty gRPC server of the benchmark floors.")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--keys", type=Path, required=True, help="a topology's key directory")
    parser.add_argument("--id", required=True, help="the gateway whose certificate the server presents")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(KeyDirectory(args.keys), args.id, args.port))


if __name__ == "__main__":
    main()
