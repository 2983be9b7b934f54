"""Backend configuration: validated up front, and no password in error messages."""

from __future__ import annotations

import pytest

from relay.pool.connection import RedisBackend, RedisConfig


@pytest.mark.parametrize("options", [{"max_in_flight": 0}, {"retries": -1}])
def test_invalid_config_is_refused(options: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        RedisConfig(**options)


async def test_where_never_shows_credentials() -> None:
    async with RedisBackend.connect(RedisConfig("redis://relay:s3cret@127.0.0.1:6399/0")) as backend:
        assert backend.where == "Redis at redis://127.0.0.1:6399/0"
