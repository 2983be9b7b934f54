"""A gateway's 014 answers name the condition, never its internals (issue 12, section 5), over real TLS.

With the region's Redis down, SAEs used to read ``redis://127.0.0.1:.../0 ... ConnectionError: Error 111``
in their 503s. They now read "key storage unavailable"; the gateway's log keeps the detail.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from relay.etsi014.client import KmeError
from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from tests.support.local_testbed import LocalTestbed, running_testbed
from tests.support.redis_servers import RedisServer

INTERNALS = ("redis://", "127.0.0.1", "Error 111", "ConnectionError", "Redis at")


@pytest.fixture
async def testbed(topology_keys: KeyDirectory, private_redis: RedisServer) -> AsyncIterator[LocalTestbed]:
    async with running_testbed(topology_keys, private_redis.url, GatewaySettings(prerelay=False)) as running:
        yield running


async def test_a_storage_outage_is_named_not_described(
    testbed: LocalTestbed, private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with testbed.sae("SAE-R1-A") as master, testbed.sae("SAE-R3-A") as slave:
        issued = await master.get_key("SAE-R3-A", KeyRequest(number=1))
        private_redis.stop()
        answers = []
        with caplog.at_level(logging.WARNING):
            for call in (
                lambda: slave.get_key_with_ids("SAE-R1-A", [issued.keys[0].key_id]),
                lambda: master.get_key("SAE-R3-A", KeyRequest(number=1)),
                lambda: master.get_key("SAE-R3-A", KeyRequest(number=1, size=512)),  # on demand, never pooled
                lambda: master.get_status("SAE-R3-A"),
            ):
                with pytest.raises(KmeError) as caught:
                    await call()
                assert caught.value.status == 503 and caught.value.error is not None
                answers.append(caught.value.error.message)
    print(f"\n503 answers with Redis down: {answers}")
    assert answers[0] == "key storage unavailable" and answers[3] == "key storage unavailable"
    assert all("key storage unavailable" in answer for answer in answers)
    assert [a for a in answers if any(internal in a for internal in INTERNALS)] == []
    assert any("redis://" in record.getMessage() for record in caplog.records)  # the log keeps the detail
