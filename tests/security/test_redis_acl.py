"""Redis-level attacker: a gateway's Redis user cannot copy keys away, put them back, wipe or reconfigure.

The review's attack: DUMP a relayed key's hash (and its index and tombstone entries) before the slave
fetches it, RESTORE them afterwards, and the slave fetches the same key again. With the ACL file ``keys
init`` writes, a gateway's credentials (the ones on its disk, so the ones an attacker on that host finds)
allow neither, nor any name outside that gateway's prefix, while the relay keeps working.
"""

from __future__ import annotations

import base64

import pytest
import redis

from relay.domain import gateway_key_prefix
from relay.pki.redis_access import read_credentials
from tests.support.hand_sealed_hops import enc_keys, fetch
from tests.support.redis_servers import ASK_ONCE, RedisServer
from tests.support.threaded_testbed import ThreadedTestbed

FORBIDDEN = [
    ("DUMP", "{name}"),
    ("RESTORE", "{name}-copy", "0", "payload"),
    ("MIGRATE", "127.0.0.1", "1", "{name}", "0", "1000"),
    ("CONFIG", "SET", "appendfsync", "no"),
    ("CONFIG", "SET", "appendonly", "no"),
    ("DEBUG", "SLEEP", "0"),  # refused before the ACL check too: Redis's enable-debug-command is "no"
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("ACL", "LIST"),
    ("ACL", "SETUSER", "GW1", "+@all"),
    ("SHUTDOWN", "NOSAVE"),
    ("EVAL", "return redis.call('DUMP', KEYS[1])", "1", "{name}"),
    ("RENAME", "{name}", "{name}-moved"),
    ("COPY", "{name}", "{name}-copy"),
]


def _as(server: RedisServer, username: str, password: str) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=server.port, username=username, password=password, socket_timeout=5, retry=ASK_ONCE
    )


def _own_names(server: RedisServer, gateway: str) -> list[str]:
    with server.client() as admin:
        return [name.decode() for name in admin.scan_iter(f"{gateway_key_prefix(gateway)}:*", count=1000)]


@pytest.fixture
def relayed(bed: ThreadedTestbed) -> tuple[str, bytes]:
    response = enc_keys(bed, "SAE-R1-A", "GW1", "SAE-R3-A")
    assert response.status_code == 200
    key = response.json()["keys"][0]
    return key["key_ID"], base64.b64decode(key["key"])


@pytest.mark.parametrize("command", FORBIDDEN, ids=lambda c: " ".join(c[:2]))
def test_a_gateway_user_cannot_copy_restore_wipe_or_reconfigure(
    bed: ThreadedTestbed, security_redis: RedisServer, relayed: tuple[str, bytes], command: tuple[str, ...]
) -> None:
    name = _own_names(security_redis, "GW3")[0]  # the slave's gateway holds the waiting key
    credentials = read_credentials(bed.testbed.keys, "GW3")
    with _as(security_redis, credentials.username, credentials.password) as gw3:
        refusal = redis.exceptions.ResponseError if command[0] == "DEBUG" else redis.exceptions.NoPermissionError
        with pytest.raises(refusal):
            gw3.execute_command(*(part.format(name=name) for part in command))
    with security_redis.client() as admin:
        assert admin.config_get("appendfsync") == {"appendfsync": "always"}
        assert admin.exists(name)


def test_a_gateway_user_cannot_touch_another_gateways_prefix(
    bed: ThreadedTestbed, security_redis: RedisServer, relayed: tuple[str, bytes]
) -> None:
    foreign = _own_names(security_redis, "GW3")
    assert foreign
    credentials = read_credentials(bed.testbed.keys, "GW1")
    with _as(security_redis, credentials.username, credentials.password) as gw1:
        assert gw1.set(f"{gateway_key_prefix('GW1')}:probe", b"x", px=1000)  # its own prefix: allowed
        for name in foreign[:5]:
            for command in (("EXISTS", name), ("DEL", name), ("HGET", name, "k"), ("ZSCORE", name, "x")):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    gw1.execute_command(*command)
        with pytest.raises(redis.exceptions.NoPermissionError):  # nor through a script (Redis 7 checks inside Lua)
            gw1.eval("return redis.call('DEL', KEYS[1])", 1, foreign[0])
        with pytest.raises(redis.exceptions.NoPermissionError):
            gw1.set(f"{gateway_key_prefix('GW10')}:probe", b"x")  # a prefix that merely starts alike


def test_the_default_user_is_off_and_passwords_are_per_user(bed: ThreadedTestbed, security_redis: RedisServer) -> None:
    with redis.Redis(host="127.0.0.1", port=security_redis.port, socket_timeout=5, retry=ASK_ONCE) as anonymous:
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()
    for username, password in (
        ("default", ""),
        ("default", "x"),
        ("GW1", read_credentials(bed.testbed.keys, "GW2").password),
    ):
        with pytest.raises(redis.exceptions.AuthenticationError), _as(security_redis, username, password) as client:
            client.ping()


def test_the_relay_works_under_its_users(bed: ThreadedTestbed, relayed: tuple[str, bytes]) -> None:
    key_id, key = relayed
    response = fetch(bed, "SAE-R3-A", "SAE-R1-A", key_id)
    assert response.status_code == 200
    assert base64.b64decode(response.json()["keys"][0]["key"]) == key
    assert fetch(bed, "SAE-R3-A", "SAE-R1-A", key_id).status_code == 400  # delivered once
