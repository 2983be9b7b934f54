"""Hypothesis on the hop-frame wire format: decoders and open_frame under arbitrary and mutated input.

Decoding may only fail with the documented exceptions (``MalformedMessage`` for frames and frame headers,
``BadAnnouncement`` for encapsulation-key announcements); opening a mutated sealed frame must be refused
with a ``HopError`` and never yield a key. Samples are frames of several keys in every mode (qkd+pqc with
qkd_use hkdf and otp, pqc-only), so item counts, per-item sizes and pad key_IDs are all mutated too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.crypto.errors import BadAnnouncement, HopError, MalformedMessage
from relay.crypto.frame import SealedFrame
from relay.crypto.header import FrameHeader, HopMode, QkdUse
from relay.crypto.keyring import EncapsulationKeyAnnouncement
from relay.crypto.suites import SUITE_A, SUITE_B
from tests.support.crypto_identities import Identities, Link
from tests.support.mutations import mutations

DECODE_BOUND_S = 1.0
FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=3000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
POLICIES = {
    "hkdf": (HopMode.QKD_PQC, QkdUse.HKDF),
    "otp": (HopMode.QKD_PQC, QkdUse.OTP),
    "pqc-only": (HopMode.PQC_ONLY, QkdUse.HKDF),
}
KEYS = (b"K" * 32, b"L" * 1, b"M" * 33)  # three items; an otp frame pads them with 1, 1 and 2 QKD keys


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> Identities:
    return Identities.create(tmp_path_factory.mktemp("fuzz-identities"))


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture(scope="module", params=[SUITE_A, SUITE_B], ids=["suiteA", "suiteB"])
def link(request: pytest.FixtureRequest, identities: Identities) -> Link:
    return identities.link(request.param)


@pytest.fixture(scope="module")
def samples(link: Link) -> dict[str, bytes]:
    """Valid encodings to mutate: a sealed frame per policy, the headers, and an announcement."""
    frames = {name: link.seal(*KEYS, mode=mode, qkd_use=use).message for name, (mode, use) in POLICIES.items()}
    return (
        {f"frame/{name}": message.to_bytes() for name, message in frames.items()}
        | {f"header/{name}": message.header.encode() for name, message in frames.items()}
        | {"announcement": link.receiver.current_announcement().to_bytes()}
    )


def _decode(kind: str, data: bytes) -> None:
    started = time.monotonic()
    try:
        if kind == "announcement":
            EncapsulationKeyAnnouncement.from_bytes(data)
        elif kind == "header":
            FrameHeader.decode(data)
        else:
            SealedFrame.from_bytes(data)
    except (MalformedMessage, BadAnnouncement) as exc:
        expected = BadAnnouncement if kind == "announcement" else MalformedMessage
        assert isinstance(exc, expected), f"{kind}: {type(exc).__name__}"
    finally:
        assert time.monotonic() - started < DECODE_BOUND_S


@FUZZ
@given(kind=st.sampled_from(["frame", "header", "announcement"]), data=st.binary(max_size=6000))
def test_decoders_on_arbitrary_bytes(kind: str, data: bytes) -> None:
    _decode(kind, data)


def test_decoders_on_mutated_valid_encodings(samples: dict[str, bytes]) -> None:
    @FUZZ
    @given(data=st.data(), kind=st.sampled_from(sorted(samples)))
    def run(data: st.DataObject, kind: str) -> None:
        _decode(kind.split("/")[0], data.draw(mutations(samples[kind])))

    run()


def _open_refuses(runner: asyncio.Runner, link: Link, mutated: bytes, policy: str, original: bytes) -> None:
    if mutated == original:
        return
    try:
        message = SealedFrame.from_bytes(mutated)
    except MalformedMessage:
        return
    with pytest.raises(HopError):
        runner.run(asyncio.wait_for(link.open(message, *POLICIES[policy]), DECODE_BOUND_S * 5))


def _fresh_frame(link: Link, policy: str) -> bytes:
    mode, qkd_use = POLICIES[policy]
    return link.seal(*KEYS, mode=mode, qkd_use=qkd_use).message.to_bytes()


def test_open_frame_refuses_mutated_sealed_frames(runner: asyncio.Runner, link: Link) -> None:
    """A fresh seal per example (so the replay guard never masks a forgery), then a mutation of it."""

    @FUZZ
    @given(data=st.data(), policy=st.sampled_from(sorted(POLICIES)))
    def run(data: st.DataObject, policy: str) -> None:
        original = _fresh_frame(link, policy)
        _open_refuses(runner, link, data.draw(mutations(original)), policy, original)

    run()


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_open_frame_accepts_the_unmutated_frame(runner: asyncio.Runner, link: Link, policy: str) -> None:
    """The control: the harness does open what it sealed, so the refusals above are the mutations' doing."""
    opened = runner.run(link.open(SealedFrame.from_bytes(_fresh_frame(link, policy)), *POLICIES[policy]))
    assert opened.keys == KEYS


@pytest.mark.slow
def test_decoders_and_open_long(runner: asyncio.Runner, link: Link, samples: dict[str, bytes]) -> None:
    @SLOW
    @given(data=st.data(), kind=st.sampled_from(sorted(samples)))
    def decode(data: st.DataObject, kind: str) -> None:
        _decode(kind.split("/")[0], data.draw(mutations(samples[kind])))

    @SLOW
    @given(data=st.data(), policy=st.sampled_from(sorted(POLICIES)))
    def open_(data: st.DataObject, policy: str) -> None:
        original = _fresh_frame(link, policy)
        _open_refuses(runner, link, data.draw(mutations(original)), policy, original)

    decode()
    open_()
