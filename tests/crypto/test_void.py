"""Signed voids: only the path's origin can sign one, every field is covered, and each is accepted once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from relay.crypto.errors import (
    BadSignature,
    MalformedMessage,
    PolicyViolation,
    ReplayedMessage,
    StaleMessage,
    UnknownPeer,
)
from relay.crypto.replay import MemoryReplayGuard
from relay.crypto.void import DEFAULT_WINDOW_MS, VoidOrder, new_void_order, sign_void, verify_void
from tests.support.crypto_identities import Identities, ManualClock

ORIGIN, OTHER = "a-sender", "a-receiver"


def _order(clock: ManualClock, key_ids: tuple[str, ...] = ("k1", "k2")) -> VoidOrder:
    return new_void_order(key_ids, "SAE-1", "SAE-2", (ORIGIN, "GW-mid", OTHER), clock=clock)


async def test_a_void_signed_by_its_origin_verifies_once(identities: Identities) -> None:
    clock = ManualClock()
    replay = MemoryReplayGuard(clock)
    order = _order(clock)
    signature = sign_void(order, identities.by_id[ORIGIN])
    await verify_void(order, signature, trust=identities.trust, replay=replay, clock=clock)
    clock.advance(DEFAULT_WINDOW_MS // 2)
    with pytest.raises(ReplayedMessage):
        await verify_void(order, signature, trust=identities.trust, replay=replay, clock=clock)


TAMPERINGS: dict[str, Callable[[VoidOrder], VoidOrder]] = {
    "fewer key_IDs": lambda order: replace(order, key_ids=("k1",)),
    "all instead of key_IDs": lambda order: replace(order, key_ids=()),
    "key_IDs joined": lambda order: replace(order, key_ids=("k1k2",)),
    "initiator": lambda order: replace(order, initiator_sae_id="SAE-3"),
    "target": lambda order: replace(order, target_sae_id="SAE-3"),
    "shorter path": lambda order: replace(order, path=(ORIGIN, OTHER)),
    "other path": lambda order: replace(order, path=(ORIGIN, "GW-midb", OTHER)),
    "nonce": lambda order: replace(order, nonce=bytes(32)),
    "issue time": lambda order: replace(order, issued_at_ms=order.issued_at_ms + 1),
}


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
async def test_every_field_is_signed(identities: Identities, tamper: Callable[[VoidOrder], VoidOrder]) -> None:
    clock = ManualClock()
    order = _order(clock)
    signature = sign_void(order, identities.by_id[ORIGIN])
    with pytest.raises(BadSignature):
        await verify_void(
            tamper(order), signature, trust=identities.trust, replay=MemoryReplayGuard(clock), clock=clock
        )


async def test_a_void_signed_by_another_gateway_than_the_origin_is_refused(identities: Identities) -> None:
    clock = ManualClock()
    order = _order(clock)
    with pytest.raises(PolicyViolation):
        sign_void(order, identities.by_id[OTHER])
    forged = identities.by_id[OTHER].sign(order.transcript(), b"QKDRELAY-v1/void")
    with pytest.raises(BadSignature):
        await verify_void(order, forged, trust=identities.trust, replay=MemoryReplayGuard(clock), clock=clock)


async def test_a_refused_forgery_does_not_burn_the_nonce(identities: Identities) -> None:
    clock = ManualClock()
    replay = MemoryReplayGuard(clock)
    order = _order(clock)
    with pytest.raises(BadSignature):
        await verify_void(order, b"\x00" * 3309, trust=identities.trust, replay=replay, clock=clock)
    signature = sign_void(order, identities.by_id[ORIGIN])
    await verify_void(order, signature, trust=identities.trust, replay=replay, clock=clock)


@pytest.mark.parametrize("offset_ms", [DEFAULT_WINDOW_MS + 1, -DEFAULT_WINDOW_MS - 1])
async def test_a_stale_or_future_void_is_refused(identities: Identities, offset_ms: int) -> None:
    clock = ManualClock()
    order = _order(clock)
    signature = sign_void(order, identities.by_id[ORIGIN])
    clock.advance(offset_ms)
    with pytest.raises(StaleMessage):
        await verify_void(order, signature, trust=identities.trust, replay=MemoryReplayGuard(clock), clock=clock)


async def test_an_unpinned_origin_and_a_malformed_order_are_refused(identities: Identities) -> None:
    clock = ManualClock()
    order = replace(_order(clock), path=("GW-unknown", OTHER))
    with pytest.raises(UnknownPeer):
        await verify_void(order, b"", trust=identities.trust, replay=MemoryReplayGuard(clock), clock=clock)
    with pytest.raises(MalformedMessage):
        replace(order, nonce=b"short").transcript()
    with pytest.raises(MalformedMessage):
        replace(order, path=()).transcript()


def test_the_transcript_tells_apart_what_concatenation_would_not() -> None:
    clock = ManualClock()
    order = _order(clock)
    variants = [
        order,
        replace(order, key_ids=()),
        replace(order, key_ids=("k1", "k2", "")),
        replace(order, key_ids=("k1k2",)),
        replace(order, path=(ORIGIN + "GW-mid", OTHER)),
        replace(order, initiator_sae_id="SAE-1SAE-2", target_sae_id=""),
    ]
    assert len({variant.transcript() for variant in variants}) == len(variants)
