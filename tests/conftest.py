"""Shared fixtures: a throw-away PKI on disk, the embedded topology's certificates, a private Redis; and
failure reports that carry the stderr of every process of a :class:`ProcessTestbed` a test used; the root
logger restored after every test."""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from relay import topology as topology_module
from relay.pki.certs import create_ca, issue, write_identity
from relay.pki.layout import KeyDirectory
from relay.pki.provision import provision
from tests.support.process_testbed import ProcessTestbed
from tests.support.redis_servers import DEFAULT_GATEWAYS, RedisServer, redis_server

KMES = ("KME-A", "KME-B")
SAES = ("SAE-1", "SAE-2", "SAE-3", "SAE #4")


@pytest.fixture(autouse=True)
def root_logging_restored() -> Iterator[None]:
    """Tests that run the console script in-process (``relay.cli.main``) configure logging as it does,
    with a handler on the ``sys.stderr`` of that moment: pytest's capture stream, closed after the test.
    Restore the root logger, or every later log line (from a session-scoped testbed's background loops,
    say) fails with "I/O operation on closed file"."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> KeyDirectory:
    """CA, two KMEs and four SAEs (one with characters that need URL encoding)."""
    keys = KeyDirectory(tmp_path_factory.mktemp("pki"))
    ca = create_ca("test CA")
    write_identity(keys.root, "ca", ca)
    for kme in KMES:
        write_identity(keys.root, kme, issue(ca, kme, ("kme",)))
    for sae in SAES:
        write_identity(keys.root, sae, issue(ca, sae, ("sae",)))
    return keys


@pytest.fixture(scope="session")
def foreign_pki(tmp_path_factory: pytest.TempPathFactory) -> KeyDirectory:
    """Another CA that issued a certificate claiming to be SAE-1: it must be refused."""
    keys = KeyDirectory(tmp_path_factory.mktemp("foreign-pki"))
    ca = create_ca("foreign CA")
    write_identity(keys.root, "ca", ca)
    write_identity(keys.root, "SAE-1", issue(ca, "SAE-1", ("sae",)))
    return keys


@pytest.fixture(scope="session")
def topology_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyDirectory:
    """Certificates and ML-DSA identities of the embedded three-region topology (ports do not matter)."""
    return provision(topology_module.load_default(), tmp_path_factory.mktemp("keys")).directory


@pytest.fixture
def private_redis(tmp_path: Path, topology_keys: KeyDirectory) -> Iterator[RedisServer]:
    """Shared by every gateway of the embedded topology, each as its own Redis user."""
    with redis_server(tmp_path / "redis", keys=topology_keys, gateways=DEFAULT_GATEWAYS) as server:
        yield server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, ProcessTestbed):
                report.sections.append((f"process stderr ({name}, {value.directory})", value.logs()))
    return report
