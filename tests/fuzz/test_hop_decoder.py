"""Hypothesis on the hop wire format: decoders and open_hop under arbitrary and mutated input.

Decoding may only fail with the documented exceptions (``MalformedMessage`` for hop messages and headers,
``BadAnnouncement`` for encapsulation-key announcements); opening a mutated sealed hop must be refused
with a ``HopError`` and never yield a key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.crypto.errors import BadAnnouncement, HopError, MalformedMessage
from relay.crypto.header import HopHeader, HopMode
from relay.crypto.hop import SealedHop
from relay.crypto.keyring import EncapsulationKeyAnnouncement
from relay.crypto.suites import SUITE_A, SUITE_B
from tests.support.crypto_identities import Identities, Link
from tests.support.mutations import mutations

DECODE_BOUND_S = 1.0
FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=3000, deadline=None, database=None, suppress_health_check=list(HealthCheck))


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
    """Valid encodings to mutate: a sealed hop per mode, its header, and an announcement."""
    qkd = link.seal(b"k" * 32).message
    pqc = link.seal(b"k" * 16, mode=HopMode.PQC_ONLY).message
    return {
        "hop": qkd.to_bytes(),
        "pqc_hop": pqc.to_bytes(),
        "header": qkd.header.encode(),
        "announcement": link.receiver.current_announcement().to_bytes(),
    }


def _decode(kind: str, data: bytes) -> None:
    started = time.monotonic()
    try:
        if kind == "announcement":
            EncapsulationKeyAnnouncement.from_bytes(data)
        elif kind == "header":
            HopHeader.decode(data)
        else:
            SealedHop.from_bytes(data)
    except (MalformedMessage, BadAnnouncement) as exc:
        expected = BadAnnouncement if kind == "announcement" else MalformedMessage
        assert isinstance(exc, expected), f"{kind}: {type(exc).__name__}"
    finally:
        assert time.monotonic() - started < DECODE_BOUND_S


@FUZZ
@given(kind=st.sampled_from(["hop", "header", "announcement"]), data=st.binary(max_size=6000))
def test_decoders_on_arbitrary_bytes(kind: str, data: bytes) -> None:
    _decode(kind, data)


def test_decoders_on_mutated_valid_encodings(samples: dict[str, bytes]) -> None:
    @FUZZ
    @given(data=st.data(), kind=st.sampled_from(sorted(samples)))
    def run(data: st.DataObject, kind: str) -> None:
        _decode("hop" if kind == "pqc_hop" else kind, data.draw(mutations(samples[kind])))

    run()


def _open_refuses(runner: asyncio.Runner, link: Link, mutated: bytes, mode: HopMode, original: bytes) -> None:
    if mutated == original:
        return
    try:
        message = SealedHop.from_bytes(mutated)
    except MalformedMessage:
        return
    with pytest.raises(HopError):
        runner.run(asyncio.wait_for(link.open(message, mode=mode), DECODE_BOUND_S * 5))


def test_open_hop_refuses_mutated_sealed_hops(runner: asyncio.Runner, link: Link) -> None:
    """A fresh seal per example (so the replay guard never masks a forgery), then a mutation of it."""

    @FUZZ
    @given(data=st.data(), mode=st.sampled_from(list(HopMode)))
    def run(data: st.DataObject, mode: HopMode) -> None:
        original = link.seal(b"K" * 32, mode=mode).message.to_bytes()
        _open_refuses(runner, link, data.draw(mutations(original)), mode, original)

    run()


def test_open_hop_accepts_the_unmutated_message(runner: asyncio.Runner, link: Link) -> None:
    """The control: the harness does open what it sealed, so the refusals above are the mutations' doing."""
    message = link.seal(b"K" * 32).message
    assert runner.run(link.open(SealedHop.from_bytes(message.to_bytes()))).key == b"K" * 32


@pytest.mark.slow
def test_decoders_and_open_long(runner: asyncio.Runner, link: Link, samples: dict[str, bytes]) -> None:
    @SLOW
    @given(data=st.data(), kind=st.sampled_from(sorted(samples)))
    def decode(data: st.DataObject, kind: str) -> None:
        _decode("hop" if kind == "pqc_hop" else kind, data.draw(mutations(samples[kind])))

    @SLOW
    @given(data=st.data())
    def open_(data: st.DataObject) -> None:
        original = link.seal(b"K" * 32).message.to_bytes()
        _open_refuses(runner, link, data.draw(mutations(original)), HopMode.QKD_PQC, original)

    decode()
    open_()
