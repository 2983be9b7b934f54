"""A 020 client pinned to a peer hands keys to that peer only: a real 020 server presenting another
entity's genuine certificate (same CA) is refused in the handshake, before the keys are sent."""

from __future__ import annotations

import os
import uuid

import pytest

from relay.etsi020.client import Etsi020Client, PeerUnreachable, PeerWrongIdentity
from relay.etsi020.models import ExtKey, ExtKeyContainer
from relay.etsi020.server import callback_peer
from tests.support.etsi020_peers import GATEWAY, TLS13, Kme020


def _keys() -> ExtKeyContainer:
    return ExtKeyContainer((ExtKey(str(uuid.uuid4()), os.urandom(32)),), "SAE-1", ("SAE-2",))


def _pinned(kme: Kme020, expected: str) -> Etsi020Client:
    """KME-A's client, accepting only ``expected``'s server (the rule the gateway uses for its callbacks)."""
    return Etsi020Client(kme.url, kme.pki.client_context("KME-A", TLS13, peer=callback_peer(expected)))


async def test_the_peer_named_gets_the_keys(kme: Kme020) -> None:
    async with _pinned(kme, "KME-B") as client:  # the server presents KME-B's certificate
        acks = await client.ext_keys(_keys())
    assert acks and kme.backend.names() == ["check_ext_keys", "deliver"]


@pytest.mark.parametrize("expected", ["KME-A", GATEWAY])
async def test_another_entitys_server_gets_nothing(kme: Kme020, expected: str) -> None:
    async with _pinned(kme, expected) as client:
        with pytest.raises(PeerWrongIdentity, match=f"certificate of kme:KME-B, expected gateway/kme {expected}"):
            await client.ext_keys(_keys())
    assert kme.backend.calls == []  # no request reached the server: no key was handed over
    assert issubclass(PeerWrongIdentity, PeerUnreachable)  # callers treat it as no answer (then void)
