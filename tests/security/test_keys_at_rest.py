"""Keys at rest in Redis are sealed: no relayed key appears in any form, and another storage key opens nothing."""

from __future__ import annotations

import base64
import os

import pytest
import redis

from relay.crypto import StorageCipher
from relay.crypto.errors import AtRestError
from tests.support.hand_sealed_hops import enc_keys, fetch
from tests.support.redis_servers import RedisServer
from tests.support.threaded_testbed import ThreadedTestbed


def _dump(url: str) -> list[tuple[bytes, bytes]]:
    """Every (Redis key name, value) pair, whatever the type; hash fields and sorted-set members included."""
    client = redis.Redis.from_url(url)
    try:
        pairs: list[tuple[bytes, bytes]] = []
        for name in client.scan_iter(count=1000):
            kind = client.type(name)
            if kind == b"string":
                pairs.append((name, client.get(name) or b""))
            elif kind == b"hash":
                for field, value in client.hgetall(name).items():
                    pairs += [(name, field), (name, value)]
            elif kind == b"zset":
                pairs += [(name, member) for member, _ in client.zrange(name, 0, -1, withscores=True)]
            elif kind == b"set":
                pairs += [(name, member) for member in client.smembers(name)]
            elif kind == b"list":
                pairs += [(name, item) for item in client.lrange(name, 0, -1)]
            elif kind == b"stream":
                for _, fields in client.xrange(name):
                    pairs += [(name, part) for item in fields.items() for part in item]
            else:
                pytest.fail(f"unexpected Redis type {kind!r} at {name!r}")
        return pairs
    finally:
        client.close()


def _forms(key: bytes) -> list[bytes]:
    forms = [
        key,
        key.hex().encode(),
        key.hex().upper().encode(),
        base64.b64encode(key),
        base64.urlsafe_b64encode(key),
        base64.b64encode(key).rstrip(b"="),
    ]
    return forms + [form[: len(form) // 2 + 8] for form in forms]  # long prefixes too


def test_relayed_keys_are_unreadable_at_rest(bed: ThreadedTestbed, security_redis: RedisServer) -> None:
    issued = []
    for slave in ("SAE-R3-A", "SAE-R2-A"):
        response = enc_keys(bed, "SAE-R1-A", "GW1", slave, number=3)
        assert response.status_code == 200
        issued += [(slave, key["key_ID"], base64.b64decode(key["key"])) for key in response.json()["keys"]]

    pairs = _dump(security_redis.admin_url)
    assert pairs, "the gateways store nothing in Redis?"
    blob = b"\n".join(name + b"\x00" + value for name, value in pairs)
    for _, key_id, key in issued:
        assert key_id.encode() in blob  # the key_IDs are there (public), so we looked in the right place
        for form in _forms(key):
            assert form not in blob, f"key {key_id} found in Redis in the clear"

    # QKD keys at rest are sealed as well; and no stored value opens under a storage key that is not the node's
    wrong = StorageCipher(os.urandom(32))
    sealed = [(name, value) for name, value in pairs if len(value) >= 29 and value[:1] == b"\x01"]
    assert len(sealed) >= len(issued)
    for name, value in sealed:
        for aad in (name.decode(), f"{name.decode()}\x00", f"{name.decode()}\x00SAE-R1-A"):
            with pytest.raises(AtRestError):
                wrong.open(aad, value)

    for slave, key_id, key in issued:  # the control: the right node still opens its keys for their slave
        delivered = fetch(bed, slave, "SAE-R1-A", key_id)
        assert delivered.status_code == 200 and base64.b64decode(delivered.json()["keys"][0]["key"]) == key
