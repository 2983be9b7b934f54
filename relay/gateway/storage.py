"""How a gateway reaches its Redis: as its own user, over TLS for ``rediss://``, and durable or warned.

The credentials are the gateway's Redis user from ``keys/`` (``relay.pki.redis_access``): its ID and the
password ``keys init`` generated, so the gateway can touch only its own key prefix even on a Redis shared
with other gateways. Over ``rediss://`` it verifies the server against the topology's CA and presents its
own certificate. With ``--redis-cluster`` the URL names one node of a Redis Cluster, from which the client
discovers the others. With ``--redis-wait-replicas N`` every write waits for N Redis replicas (503 when
they do not confirm it in time). At start-up :func:`check_durability` reads the durability settings once: anything but
``appendonly yes`` + ``appendfsync always`` is logged as a WARNING and shown by ``qkdr_redis_durable``,
because a power loss could then deliver a key twice or lose one already handed out.
"""

from __future__ import annotations

import logging

from relay.gateway.config import GatewayPlan
from relay.gateway.metrics import GatewayMetrics
from relay.pki.layout import KeyDirectory
from relay.pki.redis_access import read_credentials
from relay.pool import PoolError, RedisBackend, RedisConfig
from relay.pool.connection import RedisTls
from relay.pool.durability import read_durability

log = logging.getLogger(__name__)


def redis_config(plan: GatewayPlan, keys: KeyDirectory) -> RedisConfig:
    credentials = read_credentials(keys, plan.id)
    own = keys.entity(plan.id)
    return RedisConfig(
        url=plan.redis_url,
        username=credentials.username,
        password=credentials.password,
        tls=RedisTls(keys.ca.cert, own.cert, own.key),
        cluster=plan.redis_cluster,
        wait_replicas=plan.redis_wait_replicas,
    )


async def check_durability(backend: RedisBackend, metrics: GatewayMetrics, gateway_id: str) -> None:
    try:
        durability = await read_durability(backend)
    except PoolError as exc:
        log.warning("gateway %s: Redis durability not checked (%s)", gateway_id, exc, extra={"gateway": gateway_id})
        return
    metrics.redis_durability = durability
    if not durability.durable:
        log.warning(
            "gateway %s: %s is NOT DURABLE (%s): acknowledged keys can be lost or delivered twice on a power "
            "loss; configure appendonly yes and appendfsync always",
            gateway_id,
            backend.where,
            durability,
            extra={"gateway": gateway_id},
        )
