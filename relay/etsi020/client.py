"""An asyncio ETSI GS QKD 020 client: hand keys to another KME, post acks to its callback, void keys.

One client per peer KME identity (the client certificate in ``ssl_context``, TLS 1.3 or higher as 020
requires). Answers are parsed with the same strict models the server uses, so a peer that breaks the
schema is reported, not trusted.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

import aiohttp

from relay.etsi020.models import (
    AckContainer,
    ExtKeyContainer,
    VersionContainer,
    VoidContainer,
    parse_ack_containers,
)
from relay.etsi020.problems import Problem
from relay.pki.tls import wrong_peer
from relay.strict_json import StrictJsonError, parse_strict_json

DEFAULT_TIMEOUT_S = 10.0


class PeerProblem(Exception):
    """The peer KME answered, but not as asked: an error status with its RFC 9457 body (when parsable) as
    ``problem``, or a success status or body that breaks the spec, described in ``problem`` by us.

    Only a 400 or 401 tells that the peer kept no association with the keys sent (spec, "Operation of
    the API"); after any other status the caller must retry or void them.
    """

    def __init__(self, status: int, problem: dict[str, Any] | None) -> None:
        super().__init__(f"peer KME answered {status}: {problem}")
        self.status = status
        self.problem = problem


class PeerUnreachable(Exception):
    """No HTTP answer: connection refused, TLS failure or timeout. The keys may still be associated."""


class PeerWrongIdentity(PeerUnreachable):
    """The server's certificate is valid but names another entity than the one the client context is pinned
    to (``relay.pki.tls.pin_server``): refused at the handshake, before any request (or key) was sent."""


class Etsi020Client:
    def __init__(self, base_url: str, ssl_context: ssl.SSLContext, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if ssl_context.minimum_version < ssl.TLSVersion.TLSv1_3:
            raise ValueError("ETSI GS QKD 020 requires TLS 1.3 or higher")
        self._base = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context), timeout=aiohttp.ClientTimeout(total=timeout_s)
        )

    async def __aenter__(self) -> Etsi020Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    async def versions(self) -> VersionContainer:
        body = await self._call("GET", f"{self._base}/kmapi/versions", expected=200)
        return _parsed(VersionContainer.from_json, body)

    async def ext_keys(self, request: ExtKeyContainer) -> list[AckContainer] | None:
        """Asynchronous mode (an ``ack_callback_url``) gives None, the acks follow at the callback;
        the synchronous mode gives the acks. The spec's peer answers a synchronous request only once
        every key is resolved, so ``[]`` (schema-valid, and right for a void) is a broken answer here;
        keys an answer leaves out are the caller's to retry or void, as after any answer but 400 and 401."""
        acks = await self._keys_call("/kmapi/v1/ext_keys", request.ack_callback_url, request.to_json())
        if acks == []:
            raise PeerProblem(200, {"malformed_answer": "no ack container for the keys handed over"})
        return acks

    async def void(self, request: VoidContainer) -> list[AckContainer] | None:
        """Like :meth:`ext_keys`: None (202) in the asynchronous mode, the acks (200) in the synchronous
        mode, where ``[]`` is a valid answer (nothing was there to void)."""
        return await self._keys_call("/kmapi/v1/ext_keys/void", request.ack_callback_url, request.to_json())

    async def post_acks(self, callback_url: str, acks: Sequence[AckContainer]) -> None:
        await self._call("POST", callback_url, [ack.to_json() for ack in acks], expected=200)

    async def _keys_call(self, path: str, callback_url: str | None, payload: Any) -> list[AckContainer] | None:
        """The mode is the caller's choice, so the other success status is a broken peer: a 202 to a
        synchronous request would leave us waiting for acks that never come."""
        if callback_url is not None:
            await self._call("POST", f"{self._base}{path}", payload, expected=202)
            return None
        body = await self._call("POST", f"{self._base}{path}", payload, expected=200)
        return list(_parsed(parse_ack_containers, body))

    async def _call(self, method: str, url: str, payload: Any = None, *, expected: int) -> Any:
        """Redirects are not followed: a 307 would carry key material to a URL the peer picked."""
        try:
            async with self._session.request(method, url, json=payload, allow_redirects=False) as response:
                body = _json_or_none(await response.read())
                if response.status >= 300:
                    raise PeerProblem(response.status, body if isinstance(body, dict) else None)
                if response.status != expected:
                    raise PeerProblem(response.status, {"unexpected_status": f"expected {expected}"})
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            if (wrong := wrong_peer(exc)) is not None:
                raise PeerWrongIdentity(f"{method} {url}: {wrong}") from exc
            raise PeerUnreachable(f"{method} {url}: {exc!r}") from exc


def _json_or_none(raw: bytes) -> Any:
    try:
        return parse_strict_json(raw) if raw else None
    except StrictJsonError:
        return None


def _parsed(parser: Any, body: Any) -> Any:
    try:
        return parser(body)
    except Problem as problem:
        raise PeerProblem(200, {"malformed_answer": problem.details}) from None
