"""Redis over TLS (``rediss://``): a real TLS-only ``redis-server`` with the certificate ``keys init`` issues
to the region's Redis, requiring client certificates. The relay works over it with each gateway as its
own user; plain TCP, a client without a certificate and one from another CA get nothing."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings
from relay.pki.layout import KeyDirectory
from relay.pki.redis_access import read_credentials, redis_server_entity
from tests.support.local_testbed import running_testbed
from tests.support.redis_servers import DEFAULT_GATEWAYS, RedisServer, redis_server

ON_DEMAND = GatewaySettings(prerelay=False)


@pytest.fixture
def tls_redis(tmp_path: Path, security_keys: KeyDirectory) -> Iterator[RedisServer]:
    entity = redis_server_entity("region1")
    with redis_server(tmp_path / "redis", keys=security_keys, gateways=DEFAULT_GATEWAYS, tls_entity=entity) as server:
        yield server


async def test_the_relay_works_over_tls_with_the_gateways_users(
    tls_redis: RedisServer, security_keys: KeyDirectory
) -> None:
    assert tls_redis.url.startswith("rediss://")
    async with running_testbed(security_keys, tls_redis.url, ON_DEMAND) as testbed:
        async with testbed.sae("SAE-R1-A") as master, testbed.sae("SAE-R3-A") as slave:
            issued = (await master.get_key("SAE-R3-A", KeyRequest(number=2))).keys
            fetched = (await slave.get_key_with_ids("SAE-R1-A", [k.key_id for k in issued])).keys
        with tls_redis.client() as admin:
            clients = admin.client_list()
    assert [k.key for k in fetched] == [k.key for k in issued]
    assert {c["user"] for c in clients} >= set(DEFAULT_GATEWAYS)


def test_plain_tcp_and_clients_without_the_right_certificate_get_nothing(
    tls_redis: RedisServer, security_keys: KeyDirectory, foreign_keys: KeyDirectory
) -> None:
    credentials = read_credentials(security_keys, "GW1")
    common = {"username": credentials.username, "password": credentials.password, "socket_timeout": 3}
    plain = f"redis://127.0.0.1:{tls_redis.port}/0"
    with redis.Redis.from_url(plain, **common) as client, pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
    no_certificate = {"ssl_ca_certs": str(security_keys.ca.cert)}
    with redis.Redis.from_url(tls_redis.url, **common, **no_certificate) as client:
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()
    foreign = foreign_keys.entity("GW1")
    other_ca = {"ssl_ca_certs": str(security_keys.ca.cert), "ssl_certfile": str(foreign.cert)}
    with redis.Redis.from_url(tls_redis.url, **common, **other_ca, ssl_keyfile=str(foreign.key)) as client:
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()
    own = security_keys.entity("GW1")
    good = {"ssl_ca_certs": str(security_keys.ca.cert), "ssl_certfile": str(own.cert), "ssl_keyfile": str(own.key)}
    with redis.Redis.from_url(tls_redis.url, **common, **good) as client:
        assert client.ping()


def test_tls_1_3_only(tls_redis: RedisServer, security_keys: KeyDirectory) -> None:
    own = security_keys.entity("GW1")
    context = ssl.create_default_context(cafile=str(security_keys.ca.cert))
    context.load_cert_chain(own.cert, own.key)
    with socket.create_connection(("127.0.0.1", tls_redis.port), timeout=3) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.3"
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", tls_redis.port), timeout=3) as raw:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="127.0.0.1")
