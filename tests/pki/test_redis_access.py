"""``keys init`` writes the Redis users: 0600 passwords, per-region ACL files naming only hashes; the
gateways' command list covers every command the pool scripts call (Redis 7 checks those against the ACL)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from relay import topology as topology_module
from relay.crypto.errors import KeyFileError
from relay.pki.layout import MissingKeyMaterial
from relay.pki.provision import provision
from relay.pki.redis_access import ADMIN_USER, HEALTH_USER, SCRIPT_COMMANDS, read_credentials
from relay.pool.scripts import Script


def test_every_command_the_pool_scripts_call_is_granted() -> None:
    called = {name.upper() for script in Script for name in re.findall(r"redis\.p?call\(\s*'(\w+)'", script.value)}
    assert called
    assert called <= set(SCRIPT_COMMANDS), f"grant these to the gateways' Redis users: {called - set(SCRIPT_COMMANDS)}"


def test_keys_init_writes_private_passwords_and_an_acl_file_per_region(tmp_path: Path) -> None:
    topology = topology_module.load_default()
    keys = provision(topology, tmp_path).directory
    users = [ADMIN_USER, *(g.id for g in topology.gateways)]
    passwords = {user: read_credentials(keys, user).password for user in users}
    assert len(set(passwords.values())) == len(users)
    for user in users:
        assert stat.S_IMODE(keys.redis_password_file(user).stat().st_mode) == 0o600
    for region in topology.regions:
        text = keys.redis_acl_file(region.id).read_text()
        assert text.splitlines()[0].startswith("user default off")
        own = {g.id for g in topology.gateways if g.region == region.id}
        assert {line.split()[1] for line in text.splitlines()} == {"default", HEALTH_USER, ADMIN_USER, *own}
        assert not any(password in text for password in passwords.values())

    again = provision(topology, tmp_path).directory  # idempotent: passwords kept
    assert {user: read_credentials(again, user).password for user in users} == passwords


def test_a_missing_or_readable_password_is_refused_with_what_to_do(tmp_path: Path) -> None:
    keys = provision(topology_module.load_default(), tmp_path).directory
    keys.redis_password_file("GW1").chmod(0o644)
    with pytest.raises(KeyFileError, match="must be 0600"):
        read_credentials(keys, "GW1")
    keys.redis_password_file("GW1").unlink()
    with pytest.raises(MissingKeyMaterial, match="run `qkd-relay keys init`"):
        read_credentials(keys, "GW1")
