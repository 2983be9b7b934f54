"""dec_keys over real mutual TLS: the answer is written, then the reservation committed; a caller that has
gone before anything was written gets its keys given back (released), never consumed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from relay.domain import Key
from relay.etsi014.client import Etsi014Client, KmeUnreachable
from relay.etsi014.models import KeyContainer, KeyIds, KeyRequest, Status
from relay.etsi014.server import ReservedKeys, create_app
from relay.http_server import RunningSite, start_site
from relay.pki.layout import KeyDirectory

KEY = Key("2b2c1f4e-0d6a-4a43-9a55-6f0c3a1b7d10", bytes(range(32)))


class SlowStorage:
    """A backend whose storage answers only when the test says so; records how each reservation ended."""

    def __init__(self) -> None:
        self.storage_answers = asyncio.Event()
        self.settled: list[str] = []
        self.settled_event = asyncio.Event()

    async def status(self, master_sae_id: str, slave_sae_id: str) -> Status:
        raise AssertionError("not used")

    async def enc_keys(self, master_sae_id: str, slave_sae_id: str, request: KeyRequest) -> KeyContainer:
        raise AssertionError("not used")

    async def dec_keys(self, slave_sae_id: str, master_sae_id: str, key_ids: KeyIds) -> ReservedKeys:
        await self.storage_answers.wait()
        return ReservedKeys(KeyContainer((KEY,)), self._settle("commit"), self._settle("release"))

    def _settle(self, how: str) -> Callable[[], Awaitable[None]]:
        async def settle() -> None:
            self.settled.append(how)
            self.settled_event.set()

        return settle


@pytest.fixture
async def kme(pki: KeyDirectory) -> AsyncIterator[tuple[RunningSite, SlowStorage]]:
    backend = SlowStorage()
    site = await start_site(create_app(backend), "127.0.0.1", 0, pki.server_context("KME-A"))
    try:
        yield site, backend
    finally:
        await site.stop()


async def test_an_answered_request_commits_after_the_answer(
    pki: KeyDirectory, kme: tuple[RunningSite, SlowStorage]
) -> None:
    site, backend = kme
    backend.storage_answers.set()
    async with Etsi014Client(site.url, pki.client_context("SAE-2")) as slave:
        fetched = await slave.get_key_with_ids("SAE-1", [KEY.key_id])
    assert fetched.keys == (KEY,)
    await asyncio.wait_for(backend.settled_event.wait(), 5)
    assert backend.settled == ["commit"]


@pytest.mark.parametrize("use_post", [False, True])
async def test_a_caller_gone_before_the_answer_gets_its_keys_given_back(
    pki: KeyDirectory, kme: tuple[RunningSite, SlowStorage], use_post: bool
) -> None:
    site, backend = kme
    async with Etsi014Client(site.url, pki.client_context("SAE-2"), timeout_s=0.3) as slave:
        with pytest.raises(KmeUnreachable):
            await slave.get_key_with_ids("SAE-1", [KEY.key_id], use_post=use_post)
    await asyncio.sleep(0.2)  # the server sees the connection closed
    backend.storage_answers.set()  # only now does storage answer with the reservation
    await asyncio.wait_for(backend.settled_event.wait(), 5)
    assert backend.settled == ["release"]
