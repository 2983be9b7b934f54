"""Shared fixtures for the crypto tests (helpers live in tests/support/crypto_identities.py)."""

import asyncio
from collections.abc import Iterator

import pytest

from relay.crypto.suites import SUITE_A, SUITE_B
from tests.support.crypto_identities import Identities, Link


@pytest.fixture(scope="session")
def identities(tmp_path_factory: pytest.TempPathFactory) -> Identities:
    """Four gateways (a sender and a receiver per suite) pinned in one identities directory."""
    return Identities.create(tmp_path_factory.mktemp("identities"))


@pytest.fixture(params=[SUITE_A, SUITE_B], ids=["suiteA", "suiteB"])
def link(request: pytest.FixtureRequest, identities: Identities) -> Link:
    return identities.link(request.param)


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for synchronous hypothesis tests that need to await open_frame."""
    with asyncio.Runner() as runner:
        yield runner
