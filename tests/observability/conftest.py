"""Reuse the gateway tests' fixtures: the topology's certificates and a private Redis per test."""

from tests.gateway.conftest import private_redis, topology_keys  # noqa: F401
