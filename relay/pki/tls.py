"""TLS contexts for mutual authentication, and how a peer's identity is read from its certificate.

Identity rule (documented in the README): the verified client certificate's URI SAN
``urn:qkd-relay:<role>:<id>`` names the peer; certificates without such a SAN (for example issued by a
vendor CA) are identified by their subject commonName. Only certificates that chain to the configured CA
reach this code, so both fields are under the operator's control.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from relay.pki.certs import URI_PREFIX


def server_context(
    cert: Path, key: Path, ca: Path, *, minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
) -> ssl.SSLContext:
    """Server side of mutual TLS: a client without a certificate from ``ca`` cannot complete the handshake.

    ETSI 014 allows TLS 1.2; ETSI 020 interfaces pass ``minimum=TLSv1_3``.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = minimum
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=str(ca))
    return context


def client_context(
    ca: Path,
    cert: Path | None = None,
    key: Path | None = None,
    *,
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
) -> ssl.SSLContext:
    """Client side: verify the server against ``ca`` (hostname included) and present our certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.minimum_version = minimum
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def peer_identity(peercert: dict[str, Any] | None, role: str) -> str | None:
    """The identity of a verified peer for ``role`` ("sae", "gateway", "kme"), or None if it has none.

    ``peercert`` is the dict returned by ``SSLSocket.getpeercert()``.
    """
    if not peercert:
        return None
    prefix = f"{URI_PREFIX}{role}:"
    uris: list[str] = [value for kind, value in peercert.get("subjectAltName", ()) if kind == "URI"]
    ours = [uri[len(prefix) :] for uri in uris if uri.startswith(prefix)]
    if ours:
        return ours[0]
    if any(uri.startswith(URI_PREFIX) for uri in uris):
        return None  # one of our certificates, issued for another role
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None
