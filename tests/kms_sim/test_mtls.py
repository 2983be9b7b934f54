"""Mutual TLS on real sockets: who gets in to a KME, and what a verified but wrong certificate gets."""

from __future__ import annotations

import pytest

from relay.etsi014.client import Etsi014Client, KmeError, KmeUnreachable
from relay.pki.layout import KeyDirectory
from relay.pki.tls import client_context
from tests.support.simulated_kms import KmsHarness


async def test_client_without_certificate_is_refused(kms: KmsHarness, pki: KeyDirectory) -> None:
    async with Etsi014Client(kms.running.kme_url("KME-A"), client_context(pki.ca.cert)) as client:
        with pytest.raises(KmeUnreachable):
            await client.get_status("SAE-2")


async def test_certificate_from_another_ca_is_refused(
    kms: KmsHarness, pki: KeyDirectory, foreign_pki: KeyDirectory
) -> None:
    impostor = foreign_pki.entity("SAE-1")
    context = client_context(pki.ca.cert, impostor.cert, impostor.key)  # trusts the server, but is not trusted
    async with Etsi014Client(kms.running.kme_url("KME-A"), context) as client:
        with pytest.raises(KmeUnreachable):
            await client.get_key("SAE-2")


async def test_client_refuses_a_server_it_cannot_verify(kms: KmsHarness, foreign_pki: KeyDirectory) -> None:
    async with Etsi014Client(kms.running.kme_url("KME-A"), foreign_pki.client_context("SAE-1")) as client:
        with pytest.raises(KmeUnreachable):
            await client.get_status("SAE-2")


async def test_certificate_for_another_role_is_not_an_sae(kms: KmsHarness, pki: KeyDirectory) -> None:
    """A KME certificate chains to the right CA but names no SAE: TLS succeeds, the request is 401."""
    async with Etsi014Client(kms.running.kme_url("KME-A"), pki.client_context("KME-B")) as client:
        with pytest.raises(KmeError) as caught:
            await client.get_status("SAE-2")
    assert caught.value.status == 401
