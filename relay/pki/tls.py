"""TLS contexts for mutual authentication, and how a peer's identity is read from its certificate.

Identity rule (documented in the README): the verified client certificate's URI SAN
``urn:qkd-relay:<role>:<id>`` names the peer; certificates without such a SAN (for example issued by a
vendor CA) are identified by their subject commonName. Only certificates that chain to the configured CA
reach this code, so both fields are under the operator's control.

The same rule pins the server a client dials (:class:`ExpectedPeer`): chaining to the CA only says the
server is *some* entity of the topology (every certificate also names ``localhost`` and 127.0.0.1, so
the hostname check cannot tell them apart), so a client context built with ``peer`` checks, inside the
handshake and before a byte of HTTP is sent, that the server is the entity it means to reach.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay.pki.certs import URI_PREFIX


class WrongPeer(ssl.SSLCertVerificationError):
    """The server's certificate chains to our CA but names another entity than the one dialled.

    A certificate error to asyncio and aiohttp (``ClientConnectorCertificateError``), so the connection
    is dropped at the handshake like any other failed verification.
    """


@dataclass(frozen=True)
class ExpectedPeer:
    """The server a client means to reach: ``id`` in one of ``roles`` by the identity rule above; or, when
    ``tls_name`` is set, also a vendor-issued certificate (one without any ``urn:qkd-relay:`` URI) that
    carries ``tls_name`` as a DNS name or as its subject commonName."""

    roles: tuple[str, ...]
    id: str
    tls_name: str | None = None

    def __str__(self) -> str:
        return f"{'/'.join(self.roles)} {self.id}" + (f" (or {self.tls_name!r})" if self.tls_name else "")

    def check(self, peercert: dict[str, Any] | None) -> None:
        """Raise :class:`WrongPeer` unless ``peercert`` (``getpeercert()``) is this peer's certificate."""
        if any(peer_identity(peercert, role) == self.id for role in self.roles):
            return
        if self.tls_name is not None and peercert and not _our_uris(peercert):
            dns_names = [value for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS"]
            if self.tls_name in dns_names or _common_name(peercert) == self.tls_name:
                return
        raise WrongPeer(f"the server presented the certificate of {describe(peercert)}, expected {self}")


def describe(peercert: dict[str, Any] | None) -> str:
    """Who a certificate names, for error messages: its ``urn:qkd-relay:`` URIs, else its commonName."""
    if not peercert:
        return "nobody (no certificate)"
    uris = [uri[len(URI_PREFIX) :] for uri in _our_uris(peercert)]
    return ", ".join(uris) if uris else f"CN={_common_name(peercert)}"


def wrong_peer(error: BaseException) -> WrongPeer | None:
    """The :class:`WrongPeer` refusal behind an aiohttp connection error (its ``certificate_error``), if any."""
    cause = getattr(error, "certificate_error", None)
    return cause if isinstance(cause, WrongPeer) else None


def pin_server(context: ssl.SSLContext, peer: ExpectedPeer) -> ssl.SSLContext:
    """Make every connection of ``context`` (asyncio's and blocking sockets alike) check ``peer`` as soon as
    its handshake completes; a wrong server fails the handshake with :class:`WrongPeer`."""

    class PinnedObject(ssl.SSLObject):  # asyncio's transports
        def do_handshake(self) -> None:
            super().do_handshake()
            peer.check(self.getpeercert())

    class PinnedSocket(ssl.SSLSocket):  # blocking sockets (requests, the threaded test clients)
        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            peer.check(self.getpeercert())

    context.sslobject_class = PinnedObject
    context.sslsocket_class = PinnedSocket
    return context


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
    peer: ExpectedPeer | None = None,
) -> ssl.SSLContext:
    """Client side: verify the server against ``ca`` (hostname included), and that it is ``peer`` when
    given (:func:`pin_server`); present our certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.minimum_version = minimum
    if cert is not None:
        context.load_cert_chain(cert, key)
    return pin_server(context, peer) if peer is not None else context


def peer_identity(peercert: dict[str, Any] | None, role: str) -> str | None:
    """The identity of a verified peer for ``role`` ("sae", "gateway", "kme"), or None if it has none.

    ``peercert`` is the dict returned by ``SSLSocket.getpeercert()``.
    """
    if not peercert:
        return None
    prefix = f"{URI_PREFIX}{role}:"
    uris = _our_uris(peercert)
    ours = [uri[len(prefix) :] for uri in uris if uri.startswith(prefix)]
    if ours:
        return ours[0]
    if uris:
        return None  # one of our certificates, issued for another role
    return _common_name(peercert)


def _our_uris(peercert: dict[str, Any]) -> list[str]:
    uris = [str(value) for kind, value in peercert.get("subjectAltName", ()) if kind == "URI"]
    return [uri for uri in uris if uri.startswith(URI_PREFIX)]


def _common_name(peercert: dict[str, Any]) -> str | None:
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None
