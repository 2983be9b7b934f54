"""Micro-benchmark: hop-frame seal/open throughput per suite, mode and frame size, next to the raw ML-KEM
and ML-DSA rates of the same run.

Run: ``python -m tests.bench.bench_crypto [--seconds 1.0]`` or ``python tests/bench/bench_crypto.py``.
Prints markdown tables for the README. A frame spends one ML-KEM encapsulation and one ML-DSA signature
however many keys it carries, so keys/s grows with the keys per frame (N = 1, 16, 512) until the per-key
work (AES-GCM, the pad XOR of qkd_use otp, encoding and checks) dominates. The raw rates are measured in
the same run on the same machine, so the ``frames/s`` column compares directly with them: at N = 1 it is
bounded by sign + verify. ML-KEM encaps includes parsing ek from bytes, as every sender must. Open
includes an in-memory replay guard and a QKD key fetch that returns at once (no KMS round trip); the
QKD keys and the relayed keys are drawn outside the timed sections.
"""

import argparse
import asyncio
import os
import platform
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cryptography
from cryptography.hazmat.backends.openssl import backend

from relay.crypto.clock import system_clock_ms
from relay.crypto.frame import FrameEntry, QkdKey, open_frame, seal_frame
from relay.crypto.header import HopMode, QkdUse, pad_keys_needed
from relay.crypto.identity import GatewayIdentity, TrustStore
from relay.crypto.kem import PycaKemProvider, generate_decapsulation_key
from relay.crypto.keyring import KeyRing
from relay.crypto.replay import MemoryReplayGuard
from relay.crypto.suites import SUITE_A, SUITE_B, Suite

KEM = PycaKemProvider()
KEY_SIZE = 32
FRAME_SIZES = (1, 16, 512)
POLICIES = ((HopMode.QKD_PQC, QkdUse.HKDF), (HopMode.QKD_PQC, QkdUse.OTP), (HopMode.PQC_ONLY, QkdUse.HKDF))


@dataclass(frozen=True)
class FrameRow:
    suite: Suite
    mode: HopMode
    qkd_use: QkdUse
    keys_per_frame: int
    seal_s: float  # mean seconds per frame
    open_s: float


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
    """Microseconds per ML-KEM encaps/decaps and ML-DSA sign/verify (of a 96-byte message, as a frame signs)."""
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


def _entries(count: int) -> list[FrameEntry]:
    path = ("gw-0", "gw-1", "gw-2")
    return [
        FrameEntry(os.urandom(16), 1, path, "SAE-A", "SAE-B", str(uuid.uuid4()), os.urandom(KEY_SIZE))
        for _ in range(count)
    ]


async def frame_costs(suite: Suite, mode: HopMode, qkd_use: QkdUse, count: int, seconds: float) -> FrameRow:
    """Mean (seal, open) seconds per frame of ``count`` 32-byte keys, timing each half of every round trip."""
    sender, receiver = (
        GatewayIdentity(name, suite, suite.signature.private_key_class.generate()) for name in ("gw-1", "gw-2")
    )
    trust = TrustStore({identity.gateway_id: identity.peer for identity in (sender, receiver)})
    ring = KeyRing(receiver, kem=KEM, clock=system_clock_ms)
    recipient = ring.current_announcement().verify(trust, system_clock_ms())
    replay = MemoryReplayGuard(system_clock_ms)
    kms: dict[str, bytes] = {}
    pads_per_frame = count * pad_keys_needed(KEY_SIZE) if mode is HopMode.QKD_PQC and qkd_use is QkdUse.OTP else 0

    def qkd_key() -> QkdKey:
        key = QkdKey(str(uuid.uuid4()), os.urandom(32))
        kms[key.key_id] = key.key
        return key

    async def fetch(key_ids: Sequence[str]) -> list[bytes]:
        return [kms.pop(key_id) for key_id in key_ids]

    seal_total = open_total = 0.0
    frames = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or frames == 0:
        entries = _entries(count)
        combiner = qkd_key() if mode is HopMode.QKD_PQC else None
        pads = [qkd_key() for _ in range(pads_per_frame)]
        start = time.perf_counter()
        pending = seal_frame(
            entries,
            recipient=recipient,
            identity=sender,
            mode=mode,
            qkd_use=qkd_use,
            qkd_key=combiner,
            pad_keys=pads,
            kem=KEM,
            clock=system_clock_ms,
        )
        sealed = time.perf_counter()
        opened = await open_frame(
            pending.message,
            recipient=ring,
            trust=trust,
            mode=mode,
            qkd_use=qkd_use,
            replay=replay,
            clock=system_clock_ms,
            fetch_qkd_keys=fetch,
        )
        done = time.perf_counter()
        assert opened.keys == tuple(entry.key for entry in entries)
        pending.verify_confirmation(b"ok", opened.confirm(b"ok"))
        seal_total, open_total, frames = seal_total + sealed - start, open_total + done - sealed, frames + 1
    return FrameRow(suite, mode, qkd_use, count, seal_total / frames, open_total / frames)


def _suite_name(suite: Suite) -> str:
    return f"{suite.id}: {suite.kem.name} + {suite.signature.name}"


def primitives_table(raw: dict[Suite, dict[str, float]]) -> str:
    lines = [
        "| suite | ML-KEM encaps/s | ML-KEM decaps/s | ML-DSA sign/s | ML-DSA verify/s |",
        "|---|--:|--:|--:|--:|",
    ]
    for suite, costs in raw.items():
        rates = " | ".join(f"{1e6 / costs[op]:,.0f}" for op in ("encaps", "decaps", "sign", "verify"))
        lines.append(f"| {_suite_name(suite)} | {rates} |")
    return "\n".join(lines)


def frames_table(rows: list[FrameRow], raw: dict[Suite, dict[str, float]]) -> str:
    lines = [
        "| suite | mode | qkd_use | keys/frame | seal keys/s | open keys/s | seal+open keys/s | frames/s "
        "| seal+open / (encaps+decaps+sign+verify) |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        total = row.seal_s + row.open_s
        primitives_s = sum(raw[row.suite].values()) / 1e6
        n = row.keys_per_frame
        lines.append(
            f"| {row.suite.id} | {row.mode.value} | {row.qkd_use.value if row.mode is HopMode.QKD_PQC else '-'} "
            f"| {n:,} | {n / row.seal_s:,.0f} | {n / row.open_s:,.0f} | {n / total:,.0f} | {1 / total:,.0f} "
            f"| {total / primitives_s:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark relay.crypto hop-frame seal/open.")
    parser.add_argument("--seconds", type=float, default=1.0, help="wall time per measurement (default 1.0)")
    seconds = parser.parse_args().seconds
    raw = {suite: raw_costs(suite, seconds) for suite in (SUITE_A, SUITE_B)}
    rows = [
        asyncio.run(frame_costs(suite, mode, qkd_use, count, seconds))
        for suite in (SUITE_A, SUITE_B)
        for mode, qkd_use in POLICIES
        for count in FRAME_SIZES
    ]
    print(
        f"Python {platform.python_version()}, cryptography {cryptography.__version__} "
        f"({backend.openssl_version_text()}), {platform.machine()}, {os.cpu_count()} CPUs, "
        f"single thread, {seconds:g} s per measurement, {KEY_SIZE}-byte relayed keys\n"
    )
    print(primitives_table(raw))
    print()
    print(frames_table(rows, raw))


if __name__ == "__main__":
    main()
