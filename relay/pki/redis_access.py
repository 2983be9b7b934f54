"""Redis users: each gateway its own, limited to its key prefix and to the commands it runs; one admin.

Whoever can run any command on a region's Redis can copy a sealed key away (DUMP) and put it back after
the slave fetched it (RESTORE), so a slave gets one key twice. Every Redis the project starts therefore
loads an ACL file written here: the ``default`` user is off; each gateway authenticates as the user named
by its gateway ID, with a generated password (``keys/<topology>/redis/<id>.password``, 0600); it may
touch only names under its own prefix (:func:`relay.domain.gateway_key_prefix`) and run only
:data:`GATEWAY_COMMANDS`. Redis 7 checks the commands a Lua script calls against the caller's ACL too,
so the pool scripts' commands are listed (``tests/pki/test_redis_access.py`` checks the list against the
scripts). Nothing that copies, moves or wipes data (DUMP, RESTORE, MIGRATE, KEYS, FLUSH*), reconfigures
the server (CONFIG SET, DEBUG, SHUTDOWN) or its users (ACL) is granted. The ``admin`` user, with its own
password, is for operators and tests; the ``health`` user can only PING, with any password. A Redis with
replicas also lists the ``replication`` user, which a replica logs in as to its master (``masteruser``/
``masterauth``) and which may only replicate (:func:`replication_rule`).

Over TLS (``rediss://``) each region's Redis presents the certificate ``keys init`` issues to
``redis-<region>`` (serverAuth only) and requires a client certificate from the same CA
(:func:`tls_server_arguments`): a gateway's, or :data:`REDIS_CLIENT_ENTITY`'s (clientAuth only) for the
admin and health users; the ACL still decides what the authenticated user may do.

The ACL file holds SHA-256 hashes of 256-bit random passwords, never a password, so it is written 0644:
whichever user runs Redis can read it, and it reveals nothing usable.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from relay.crypto.files import read_private_file, write_private_file
from relay.domain import gateway_key_prefix
from relay.pki.layout import KeyDirectory, MissingKeyMaterial
from relay.topology import Topology

ADMIN_USER = "admin"
HEALTH_USER = "health"  # any password, PING only: for container health checks that hold no secret
REPLICATION_USER = "replication"  # replicas log in to their master as this user; it may only replicate
REDIS_CLIENT_ENTITY = "admin-redis"  # the TLS client certificate of the admin and health users

SCRIPT_COMMANDS = (  # what the pool's Lua scripts call (relay/pool/scripts.py)
    "DEL", "EXISTS", "GET", "HDEL", "HGET", "HSET", "PEXPIREAT", "SET", "TIME",
    "ZADD", "ZCOUNT", "ZRANGEBYSCORE", "ZREM", "ZREMRANGEBYSCORE", "ZSCORE",
)  # fmt: skip
PLAIN_COMMANDS = ("MGET", "PING")  # (and GET, SET, DEL) replay guard, transfer log, 020 ledgers; health
REPLICATION_CHECK_COMMANDS = ("WAIT",)  # writes confirmed by replicas (RedisConfig.wait_replicas)
SCRIPTING_COMMANDS = ("EVALSHA", "SCRIPT|LOAD")  # scripts run by hash, loaded on NOSCRIPT
DURABILITY_CHECK_COMMANDS = ("CONFIG|GET",)  # the start-up check reads appendonly/appendfsync
CLUSTER_DISCOVERY_COMMANDS = ("CLUSTER|SLOTS", "CLUSTER|SHARDS", "CLUSTER|NODES", "COMMAND", "ASKING")
GATEWAY_COMMANDS = (
    SCRIPT_COMMANDS
    + PLAIN_COMMANDS
    + SCRIPTING_COMMANDS
    + DURABILITY_CHECK_COMMANDS
    + REPLICATION_CHECK_COMMANDS
    + CLUSTER_DISCOVERY_COMMANDS
)

# Off: no connection can authenticate as ``default``, so every client must AUTH as a named user. Its
# permissions stay unrestricted because Redis 7.0 replays the AOF as the default user and re-checks the
# ACL of every command a MULTI/EXEC block (how script effects are logged) queued: a restricted default
# user makes the restarted Redis silently drop every script's writes.
_DISABLED_DEFAULT = "user default off resetpass ~* &* +@all"
_HEALTH = f"user {HEALTH_USER} on nopass resetkeys resetchannels -@all +ping"


@dataclass(frozen=True)
class RedisCredentials:
    username: str
    password: str


def redis_server_entity(region_id: str) -> str:
    """The certificate name of a region's Redis; lower-cased, it is the compose service's DNS name."""
    return f"redis-{region_id}"


def tls_server_arguments(port: int, ca_file: str, cert_file: str, key_file: str) -> list[str]:
    """``redis-server`` options for TLS 1.3 only on ``port``, no plain-TCP port, client certificates required."""
    return [
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", cert_file,
        "--tls-key-file", key_file,
        "--tls-ca-cert-file", ca_file,
        "--tls-auth-clients", "yes",
        "--tls-protocols", "TLSv1.3",
    ]  # fmt: skip


def read_credentials(keys: KeyDirectory, user: str) -> RedisCredentials:
    """The password ``keys init`` generated for ``user``; refused unless the file is 0600."""
    path = keys.redis_password_file(user)
    if not path.is_file():
        raise MissingKeyMaterial(f"{path} is missing; run `qkd-relay keys init` first")
    return RedisCredentials(user, read_private_file(path).decode().strip())


def gateway_rule(gateway_id: str, password: str) -> str:
    """One ACL file line: the gateway's own prefix, its commands, no channels."""
    commands = " ".join(f"+{command.lower()}" for command in GATEWAY_COMMANDS)
    prefix = gateway_key_prefix(gateway_id)
    return f"user {gateway_id} on #{_hash(password)} resetkeys ~{prefix}:* resetchannels -@all {commands}"


def admin_rule(password: str) -> str:
    return f"user {ADMIN_USER} on #{_hash(password)} ~* &* +@all"


def replication_rule(password: str) -> str:
    """What a replica runs on its master: the PING/REPLCONF/PSYNC handshake and stream, no keys."""
    return f"user {REPLICATION_USER} on #{_hash(password)} resetkeys resetchannels -@all +ping +replconf +psync"


def acl_text(admin_password: str, gateway_passwords: Mapping[str, str], replication_password: str | None = None) -> str:
    """An ACL file: the default user off, the admin, one user per gateway (ID -> password) and, for a
    Redis with replicas, the replication user."""
    lines = [_DISABLED_DEFAULT, _HEALTH, admin_rule(admin_password)]
    if replication_password is not None:
        lines.append(replication_rule(replication_password))
    lines += [gateway_rule(gateway_id, password) for gateway_id, password in gateway_passwords.items()]
    return "\n".join(lines) + "\n"


def keys_acl_text(keys: KeyDirectory, gateway_ids: Iterable[str]) -> str:
    """The ACL file of a Redis shared by ``gateway_ids``, with the passwords ``keys init`` generated."""
    gateways = {g: read_credentials(keys, g).password for g in gateway_ids}
    return acl_text(read_credentials(keys, ADMIN_USER).password, gateways)


def provision_redis_users(topology: Topology, keys: KeyDirectory) -> list[str]:
    """Passwords for the admin and every gateway (kept if present), then every region's ACL file."""
    created = []
    for user in (ADMIN_USER, *(g.id for g in topology.gateways)):
        path = keys.redis_password_file(user)
        if not path.is_file():
            write_private_file(path, secrets.token_hex(32).encode())
            created.append(f"Redis user {user}")
    for region in topology.regions:
        gateways = [g.id for g in topology.gateways if g.region == region.id]
        write_acl_file(keys.redis_acl_file(region.id), keys_acl_text(keys, gateways))
    return created


def write_acl_file(path: os.PathLike[str], text: str) -> None:
    """Replace atomically: a Redis (re)starting meanwhile reads the old file or the new, never half of one."""
    temporary = f"{os.fspath(path)}.tmp"
    with open(temporary, "w") as file:
        file.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def _hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()
