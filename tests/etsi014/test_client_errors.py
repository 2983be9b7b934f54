"""Every failure of a 014 client call shares one base class, so a caller can catch them all at once."""

from __future__ import annotations

import socket

import pytest

from relay.etsi014.client import Etsi014Client, KmeClientError, KmeError, KmeProtocolError, KmeUnreachable
from relay.pki.layout import KeyDirectory


def test_error_answers_and_broken_answers_are_client_errors() -> None:
    assert issubclass(KmeError, KmeClientError) and issubclass(KmeProtocolError, KmeClientError)


async def test_a_kme_that_does_not_answer_raises_a_client_error(pki: KeyDirectory) -> None:
    with socket.socket() as bound_but_not_listening:
        bound_but_not_listening.bind(("127.0.0.1", 0))
        port = bound_but_not_listening.getsockname()[1]
        async with Etsi014Client(f"https://127.0.0.1:{port}", pki.client_context("SAE-1"), timeout_s=2) as client:
            with pytest.raises(KmeClientError) as raised:
                await client.get_status("SAE-2")
    assert isinstance(raised.value, KmeUnreachable)
