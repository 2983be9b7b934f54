"""An asyncio ETSI GS QKD 014 client (the gateway's southbound side, and the ``qkd-relay sae`` commands).

It checks what comes back, not only what goes out: a KME that returns fewer keys, keys of the wrong size
or duplicate key_IDs is reported as a protocol error instead of being trusted, because the gateway feeds
these keys straight into its QKD pools.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from relay.etsi014.errors import ValidationError
from relay.etsi014.models import Error, KeyContainer, KeyIds, KeyRequest, Status
from relay.pki.tls import wrong_peer

DEFAULT_TIMEOUT_S = 10.0


class KmeClientError(Exception):
    """Base of every failure of a call to a KME: an error answer, no answer, or an answer that breaks the spec."""


class KmeError(KmeClientError):
    """The KME answered with an error status; ``error`` is its Error body when it sent one."""

    def __init__(self, status: int, error: Error | None) -> None:
        message = error.message if error else "no error body"
        super().__init__(f"KME answered {status}: {message}")
        self.status = status
        self.error = error


class KmeUnreachable(KmeClientError):
    """No HTTP answer: connection refused, TLS handshake failed, or the request timed out."""


class KmeWrongIdentity(KmeUnreachable):
    """The server's certificate is valid but names another entity than the KME the client context is pinned
    to (``relay.pki.tls.pin_server``): refused at the handshake, before any request was sent."""


class KmeProtocolError(KmeClientError):
    """The KME answered 200 with a body that breaks the spec or does not match the request."""


class Etsi014Client:
    """One KME, one SAE identity (the client certificate inside ``ssl_context``)."""

    def __init__(self, base_url: str, ssl_context: ssl.SSLContext, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._base = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )

    async def __aenter__(self) -> Etsi014Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    async def get_status(self, slave_sae_id: str) -> Status:
        body = await self._call("GET", slave_sae_id, "status")
        return self._parse(Status.from_json, body)

    async def get_key(
        self, slave_sae_id: str, request: KeyRequest | None = None, *, use_post: bool = False
    ) -> KeyContainer:
        """Get key (master side). Uses the GET form when the request allows it, unless ``use_post``."""
        request = request or KeyRequest()
        if request.fits_get_form() and not use_post:
            params = {name: str(value) for name, value in request.to_json().items()}
            body = await self._call("GET", slave_sae_id, "enc_keys", params=params)
        else:
            body = await self._call("POST", slave_sae_id, "enc_keys", json=request.to_json())
        container = self._parse(KeyContainer.from_json, body)
        expected = request.number or 1
        if len(container.keys) != expected:
            raise KmeProtocolError(f"asked for {expected} keys, received {len(container.keys)}")
        if request.size is not None and any(len(k.key) * 8 != request.size for k in container.keys):
            raise KmeProtocolError(f"a key does not have the requested size of {request.size} bits")
        _check_unique(container)
        return container

    async def get_key_with_ids(
        self, master_sae_id: str, key_ids: Sequence[str], *, use_post: bool = False
    ) -> KeyContainer:
        """Get key with key IDs (slave side). A single ID uses the GET form unless ``use_post``."""
        if len(key_ids) == 1 and not use_post:
            body = await self._call("GET", master_sae_id, "dec_keys", params={"key_ID": key_ids[0]})
        else:
            body = await self._call("POST", master_sae_id, "dec_keys", json=KeyIds(tuple(key_ids)).to_json())
        container = self._parse(KeyContainer.from_json, body)
        if sorted(k.key_id for k in container.keys) != sorted(str(k).lower() for k in key_ids):
            raise KmeProtocolError("the KME returned other key_IDs than those requested")
        return container

    async def _call(
        self, method: str, sae_id: str, operation: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> Any:
        url = URL(f"{self._base}/api/v1/keys/{quote(sae_id, safe='')}/{operation}", encoded=True)
        try:
            async with self._session.request(method, url, params=params, json=json) as response:
                if response.status != 200:
                    raise KmeError(response.status, await _error_body(response))
                try:
                    return await response.json(content_type=None)
                except ValueError:
                    raise KmeProtocolError(f"{operation}: the KME answered 200 with a body that is not JSON") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            if (wrong := wrong_peer(exc)) is not None:
                raise KmeWrongIdentity(f"{method} {operation} at {self._base}: {wrong}") from exc
            raise KmeUnreachable(f"{method} {operation} at {self._base}: {exc!r}") from exc

    @staticmethod
    def _parse(parser: Any, body: Any) -> Any:
        try:
            return parser(body)
        except ValidationError as exc:
            raise KmeProtocolError(f"malformed answer from the KME: {exc.message}") from None


async def _error_body(response: aiohttp.ClientResponse) -> Error | None:
    """401 may come without a body (Table 4); anything unparsable is reported as absent, not raised."""
    try:
        return Error.from_json(await response.json(content_type=None))
    except (ValueError, aiohttp.ContentTypeError):
        return None


def _check_unique(container: KeyContainer) -> None:
    ids = [key.key_id for key in container.keys]
    if len(set(ids)) != len(ids):
        raise KmeProtocolError("the KME returned the same key_ID twice")
