"""Micro-benchmark: hop seal/open per suite and mode, next to the raw ML-KEM and ML-DSA costs.

Run: ``python -m tests.bench.bench_crypto [--seconds 1.0]`` or ``python tests/bench/bench_crypto.py``.
Prints a markdown table for the README. Raw costs are measured in the same run on the same machine, so
the ratio column shows what the construction costs over bare ML-KEM (the ML-DSA signature dominates) and
"rest" is what remains after all four primitives: HKDF, AES-GCM, encoding and checks. ML-KEM encaps
includes parsing ek from bytes, as every sender must. Open includes an in-memory replay guard and a QKD
key lookup that returns at once (no KMS round trip).
"""

import argparse
import asyncio
import os
import platform
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import cryptography
from cryptography.hazmat.backends.openssl import backend

from relay.crypto.clock import system_clock_ms
from relay.crypto.header import HopMode
from relay.crypto.hop import HopRoute, QkdKey, open_hop, seal_hop
from relay.crypto.identity import GatewayIdentity, TrustStore
from relay.crypto.kem import PycaKemProvider, generate_decapsulation_key
from relay.crypto.keyring import KeyRing
from relay.crypto.replay import MemoryReplayGuard
from relay.crypto.suites import SUITE_A, SUITE_B, Suite

KEM = PycaKemProvider()


@dataclass(frozen=True)
class Row:
    suite: Suite
    mode: HopMode
    seal_us: float
    open_us: float
    raw: dict[str, float]


def time_per_op(operation: Callable[[], object], seconds: float) -> float:
    """Mean microseconds per call over at least ``seconds`` of wall time."""
    operation()  # warm-up
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        operation()
        count += 1
    return (time.perf_counter() - start) / count * 1e6


def raw_costs(suite: Suite, seconds: float) -> dict[str, float]:
    dk = generate_decapsulation_key(KEM, suite.kem)
    encapsulation = KEM.encapsulate(suite.kem, dk.encapsulation_key)
    signer = suite.signature.private_key_class.generate()
    verifier, message = signer.public_key(), os.urandom(96)
    signature = signer.sign(message, b"bench")
    return {
        "encaps": time_per_op(lambda: KEM.encapsulate(suite.kem, dk.encapsulation_key), seconds),
        "decaps": time_per_op(lambda: dk.decapsulate(encapsulation.ciphertext), seconds),
        "sign": time_per_op(lambda: signer.sign(message, b"bench"), seconds),
        "verify": time_per_op(lambda: verifier.verify(signature, message, b"bench"), seconds),
    }


async def hop_costs(suite: Suite, mode: HopMode, seconds: float) -> tuple[float, float]:
    """Mean (seal, open) microseconds for 32-byte keys, timing each half of every round trip."""
    sender, receiver = (
        GatewayIdentity(name, suite, suite.signature.private_key_class.generate()) for name in ("gw-1", "gw-2")
    )
    trust = TrustStore({identity.gateway_id: identity.peer for identity in (sender, receiver)})
    ring = KeyRing(receiver, kem=KEM, clock=system_clock_ms)
    recipient = ring.current_announcement().verify(trust, system_clock_ms())
    replay = MemoryReplayGuard(system_clock_ms)
    qkd_keys: dict[str, bytes] = {}

    async def fetch(key_id: str) -> bytes:
        return qkd_keys.pop(key_id)

    seal_total = open_total = 0.0
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or count == 0:
        qkd_key = None
        if mode is HopMode.QKD_PQC:
            qkd_key = QkdKey(str(uuid.uuid4()), os.urandom(32))
            qkd_keys[qkd_key.key_id] = qkd_key.key
        route = HopRoute(os.urandom(16), 1, str(uuid.uuid4()))
        start = time.perf_counter()
        pending = seal_hop(
            os.urandom(32),
            route=route,
            recipient=recipient,
            identity=sender,
            mode=mode,
            qkd_key=qkd_key,
            kem=KEM,
            clock=system_clock_ms,
        )
        sealed = time.perf_counter()
        opened = await open_hop(
            pending.message,
            recipient=ring,
            trust=trust,
            mode=mode,
            replay=replay,
            clock=system_clock_ms,
            fetch_qkd_key=fetch,
        )
        done = time.perf_counter()
        pending.verify_confirmation(opened.confirmation)
        seal_total, open_total, count = seal_total + sealed - start, open_total + done - sealed, count + 1
    return seal_total / count * 1e6, open_total / count * 1e6


def table(rows: list[Row]) -> str:
    lines = [
        "| suite | mode | seal/s | seal µs | open/s | open µs | ML-KEM encaps µs | ML-KEM decaps µs "
        "| ML-DSA sign µs | ML-DSA verify µs | (seal+open) / (encaps+decaps) | rest µs |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        raw = row.raw
        total = row.seal_us + row.open_us
        ratio, rest = total / (raw["encaps"] + raw["decaps"]), total - sum(raw.values())
        lines.append(
            f"| {row.suite.id}: {row.suite.kem.name} + {row.suite.signature.name} | {row.mode.value} "
            f"| {1e6 / row.seal_us:,.0f} | {row.seal_us:,.0f} "
            f"| {1e6 / row.open_us:,.0f} | {row.open_us:,.0f} "
            f"| {raw['encaps']:,.0f} | {raw['decaps']:,.0f} | {raw['sign']:,.0f} | {raw['verify']:,.0f} "
            f"| {ratio:.1f}x | {rest:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark relay.crypto hop seal/open.")
    parser.add_argument("--seconds", type=float, default=1.0, help="wall time per measurement (default 1.0)")
    seconds = parser.parse_args().seconds
    rows = []
    for suite in (SUITE_A, SUITE_B):
        raw = raw_costs(suite, seconds)
        for mode in HopMode:
            seal_us, open_us = asyncio.run(hop_costs(suite, mode, seconds))
            rows.append(Row(suite, mode, seal_us, open_us, raw))
    print(
        f"Python {platform.python_version()}, cryptography {cryptography.__version__} "
        f"({backend.openssl_version_text()}), {platform.machine()}, {os.cpu_count()} CPUs, "
        f"single thread, {seconds:g} s per measurement, 32-byte relayed keys\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
