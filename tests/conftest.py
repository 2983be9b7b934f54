"""Shared fixtures: a throw-away PKI on disk and helpers for free loopback ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from relay.pki.certs import create_ca, issue, write_identity
from relay.pki.layout import KeyDirectory

KMES = ("KME-A", "KME-B")
SAES = ("SAE-1", "SAE-2", "SAE-3", "SAE #4")


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
