"""A real three-gateway testbed running in a background thread, for synchronous fuzzers.

Hypothesis (and schemathesis on top of it) drives blocking clients: ``requests`` over mutual TLS and
gRPC's synchronous channel. The gateways, vendor KMS simulators and their listeners run in an event loop
of their own thread, so a blocking request from the test thread is served concurrently, exactly as a
remote client would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import requests

from relay.etsi014.client import KmeError
from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings
from relay.gateway.grpc_tls import channel_options
from relay.pki.layout import KeyDirectory
from tests.support.local_testbed import LocalTestbed, running_testbed

T = TypeVar("T")
# Fuzzed asynchronous 020 requests name a callback where nothing listens: with the default 30 s of ack
# retries the gateway's stop waited for each one (20-30 s per fuzz run). One second still retries, then voids.
ON_DEMAND = GatewaySettings(prerelay=False, ack_retry_s=1.0)
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 90.0


@dataclass
class ThreadedTestbed:
    testbed: LocalTestbed
    loop: asyncio.AbstractEventLoop
    redis_url: str
    sessions: list[requests.Session] = field(default_factory=list)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coroutine`` in the testbed's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def refill(self) -> None:
        """One filler round on every QKD link, for tests that ran a require-qkd link dry (503)."""
        self.run(self.testbed.fill_qkd_pools())
        time.sleep(0.2)

    def url(self, gateway_id: str, site: str) -> str:
        running = self.testbed.gateways[gateway_id].sites[site]
        return f"https://localhost:{running.port}"

    def grpc_target(self, gateway_id: str) -> str:
        return f"127.0.0.1:{self.testbed.gateways[gateway_id].grpc_port}"

    def session(self, entity: str, keys: KeyDirectory | None = None) -> requests.Session:
        """A ``requests`` session presenting ``entity``'s certificate and trusting the testbed's CA."""
        keys = keys or self.testbed.keys
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override verify, and proxies apply
        files = keys.entity(entity)
        session.cert = (str(files.cert), str(files.key))
        session.verify = str(self.testbed.keys.ca.cert)
        self.sessions.append(session)
        return session

    def close_sessions(self) -> None:
        for session in self.sessions:
            session.close()
        self.sessions.clear()

    @contextlib.contextmanager
    def grpc_channel(self, gateway_id: str, entity: str, keys: KeyDirectory | None = None) -> Iterator[grpc.Channel]:
        """A synchronous mTLS channel to ``gateway_id``'s gRPC listener presenting ``entity``'s certificate."""
        keys = keys or self.testbed.keys
        files = keys.entity(entity)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.testbed.keys.ca.cert.read_bytes(),
            private_key=files.key.read_bytes(),
            certificate_chain=files.cert.read_bytes(),
        )
        channel = grpc.secure_channel(self.grpc_target(gateway_id), credentials, options=channel_options(gateway_id))
        try:
            yield channel
        finally:
            channel.close()


@contextlib.contextmanager
def threaded_testbed(
    keys: KeyDirectory, redis_url: str, settings: GatewaySettings = ON_DEMAND
) -> Iterator[ThreadedTestbed]:
    loop = asyncio.new_event_loop()
    stop = threading.Event()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        try:
            async with running_testbed(keys, redis_url, settings) as testbed:
                box["testbed"] = testbed
                started.set()
                while not stop.is_set():
                    await asyncio.sleep(0.05)
        except BaseException as exc:  # reported to the test thread
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), name="fuzz-testbed", daemon=True)
    thread.start()
    if not started.wait(START_TIMEOUT_S) or "error" in box:
        stop.set()
        thread.join(30)
        raise RuntimeError(f"the testbed did not start: {box.get('error')!r}")
    try:
        bed = ThreadedTestbed(box["testbed"], loop, redis_url)
        yield bed
    finally:
        if "bed" in locals():
            bed.close_sessions()
        stop.set()
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            raise RuntimeError(f"the testbed did not stop within {STOP_TIMEOUT_S} s")
        loop.close()


def assert_still_relays(bed: ThreadedTestbed) -> None:
    """A real key exchange still works after a fuzz run (a dry require-qkd link is refilled first)."""

    async def exchange() -> None:
        async with bed.testbed.sae("SAE-R1-A") as master, bed.testbed.sae("SAE-R3-A") as slave:
            issued = await master.get_key("SAE-R3-A", KeyRequest())
            fetched = await slave.get_key_with_ids("SAE-R1-A", [issued.keys[0].key_id])
        assert fetched.keys[0].key == issued.keys[0].key

    for attempt in range(3):  # a require-qkd link the fuzzer ran dry answers 503 until refilled
        try:
            bed.run(exchange())
            return
        except KmeError as exc:
            if exc.status != 503 or attempt == 2:
                raise
            bed.refill()
