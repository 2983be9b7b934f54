"""The ETSI GS QKD 014 HTTP surface, shared by the vendor KMS simulator and the gateway's northbound API.

This module owns everything HTTP: routes (GET and POST forms), the caller's SAE ID from its verified
client certificate, strict JSON parsing, body limits (size and time) and the mapping of errors onto the
spec's 400/401/503 with JSON Error bodies; a refused request costs one INFO log line, and an answer names
the condition, never internals (the listener itself is hardened by :mod:`relay.http_server`). What keys
exist and who may have them is the backend's business (:class:`KeyDeliveryBackend`), so the simulator and
the gateway share one spec-exact front end.

A slave's keys are handed over in two steps, so none is lost to a caller that has gone: the backend
reserves them (:class:`ReservedKeys`); if the connection is closed by then, nothing has been written and
the reservation is released, otherwise the answer is written and the reservation committed. Once a byte
of the answer may have left, the keys count as delivered: at-most-once wins over availability.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from relay.domain import MAX_SAE_ID_LENGTH
from relay.etsi014.errors import Etsi014Error, UnauthorizedError, ValidationError
from relay.etsi014.models import Error, KeyContainer, KeyIds, KeyRequest, Status
from relay.etsi014.openapi import etsi014_document
from relay.openapi_frame import OPENAPI_PATH
from relay.pki.tls import peer_identity
from relay.strict_json import StrictJsonError, parse_strict_json

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_BODY_TIMEOUT_S = 20.0  # a request body still arriving after this is a slow client: 400 and close


@dataclass(frozen=True)
class ReservedKeys:
    """Keys set aside for one dec_keys answer: ``commit`` once it is written, ``release`` if it never was.

    Both are called at most once, and only one of them. A backend whose process dies in between must not
    make the keys deliverable again (the gateway's reservations expire into tombstones).
    """

    container: KeyContainer
    commit: Callable[[], Awaitable[None]]
    release: Callable[[], Awaitable[None]]


class KeyDeliveryBackend(Protocol):
    """What a KME does once the request is authenticated and well formed."""

    async def status(self, master_sae_id: str, slave_sae_id: str) -> Status: ...

    async def enc_keys(self, master_sae_id: str, slave_sae_id: str, request: KeyRequest) -> KeyContainer:
        """Draw keys for ``master`` shared with ``slave``; they leave the pool (clause 5.2 post-condition)."""
        ...

    async def dec_keys(self, slave_sae_id: str, master_sae_id: str, key_ids: KeyIds) -> ReservedKeys:
        """Reserve for ``slave`` the keys the master obtained; 401 if any was not issued to ``slave``.

        Each key is delivered once: no other call gets a reserved key until it is released.
        """
        ...


@runtime_checkable
class WithdrawsAbandonedKeys(Protocol):
    """A backend whose enc_keys keys already exist elsewhere (relayed, handed over): when the master left
    before its answer was written, the front end tells it, so that no slave gets keys no master holds."""

    async def enc_keys_abandoned(self, master_sae_id: str, slave_sae_id: str, container: KeyContainer) -> None: ...


BACKEND_KEY = web.AppKey("etsi014_backend", KeyDeliveryBackend)
MAX_BODY_KEY = web.AppKey("etsi014_max_body_bytes", int)
BODY_TIMEOUT_KEY = web.AppKey("etsi014_body_timeout_s", float)


class SlowBody(ValidationError):
    """The request body did not arrive in time; the connection is closed after the 400."""


def create_app(
    backend: KeyDeliveryBackend,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes, middlewares=[_error_middleware])
    app[BACKEND_KEY] = backend
    app[MAX_BODY_KEY] = max_body_bytes
    app[BODY_TIMEOUT_KEY] = body_timeout_s
    app.router.add_get("/api/v1/keys/{slave_SAE_ID}/status", _status)
    app.router.add_route("GET", "/api/v1/keys/{slave_SAE_ID}/enc_keys", _enc_keys)
    app.router.add_route("POST", "/api/v1/keys/{slave_SAE_ID}/enc_keys", _enc_keys)
    app.router.add_route("GET", "/api/v1/keys/{master_SAE_ID}/dec_keys", _dec_keys)
    app.router.add_route("POST", "/api/v1/keys/{master_SAE_ID}/dec_keys", _dec_keys)
    app.router.add_get(OPENAPI_PATH, _openapi)
    return app


async def _openapi(request: web.Request) -> web.Response:
    """The OpenAPI document of this interface, for any authenticated SAE."""
    _calling_sae(request)
    return _json(etsi014_document())


async def _status(request: web.Request) -> web.Response:
    caller = _calling_sae(request)
    slave = _path_sae_id(request, "slave_SAE_ID", caller)
    status = await request.app[BACKEND_KEY].status(caller, slave)
    return _json(status.to_json())


async def _enc_keys(request: web.Request) -> web.Response:
    caller = _calling_sae(request)
    slave = _path_sae_id(request, "slave_SAE_ID", caller)
    if request.method == "GET":
        key_request = KeyRequest.from_query(_single_valued_query(request))
    else:
        _refuse_query(request)
        body = await _read_json(request)
        key_request = KeyRequest() if body is None else KeyRequest.from_json(body)
    backend = request.app[BACKEND_KEY]
    container = await backend.enc_keys(caller, slave, key_request)
    if isinstance(backend, WithdrawsAbandonedKeys) and (request.transport is None or request.transport.is_closing()):
        log.info("an enc_keys caller left before its answer: %d key(s) withdrawn", len(container.keys))
        await backend.enc_keys_abandoned(caller, slave, container)
    return _json(container.to_json())


async def _dec_keys(request: web.Request) -> web.StreamResponse:
    caller = _calling_sae(request)
    master = _path_sae_id(request, "master_SAE_ID", caller)
    if request.method == "GET":
        key_ids = KeyIds.from_query(_single_valued_query(request))
    else:
        _refuse_query(request)
        body = await _read_json(request)
        if body is None:
            raise ValidationError("dec_keys POST needs a Key IDs body")
        key_ids = KeyIds.from_json(body)
    reserved = await request.app[BACKEND_KEY].dec_keys(caller, master, key_ids)
    return await _hand_over(request, reserved)


async def _hand_over(request: web.Request, reserved: ReservedKeys) -> web.StreamResponse:
    """Write the answer and commit; if the caller has gone before anything was written, release instead."""
    response = _json(reserved.container.to_json())
    if request.transport is None or request.transport.is_closing():
        await _settle(reserved.release, "give back")
        log.info("a dec_keys caller left before its answer: %d key(s) given back", len(reserved.container.keys))
        return response  # never written: aiohttp drops an answer to a closed connection
    try:
        await response.prepare(request)
        await response.write_eof()
    finally:
        await _settle(reserved.commit, "commit")
    return response


async def _settle(step: Callable[[], Awaitable[None]], what: str) -> None:
    """The answer's fate is decided; failing to record it leaves the reservation to expire (a tombstone)."""
    try:
        await step()
    except Exception:
        log.warning("could not %s the keys of a dec_keys answer; their reservation will expire", what, exc_info=True)


def _calling_sae(request: web.Request) -> str:
    """The SAE ID of the caller, from the verified client certificate (see ``relay.pki.tls``)."""
    transport = request.transport
    sae_id = peer_identity(transport.get_extra_info("peercert") if transport else None, "sae")
    if sae_id is None:
        raise UnauthorizedError("the client certificate does not identify an SAE")
    return sae_id


def _path_sae_id(request: web.Request, name: str, caller: str) -> str:
    """SAE IDs arrive URL-encoded in the path; aiohttp has decoded them by the time we read match_info."""
    value = request.match_info[name]
    if not value.strip():
        raise ValidationError(f"{name} in the URL path is empty")
    if len(value) > MAX_SAE_ID_LENGTH or not value.isprintable():
        raise ValidationError(f"{name} in the URL path is not a valid SAE ID")
    if value == caller:
        raise ValidationError(f"{name} must differ from the calling SAE's own ID")
    return value


def _single_valued_query(request: web.Request) -> dict[str, str]:
    """``?number=1&number=5`` is ambiguous; refuse it rather than guess which one the SAE meant."""
    repeated = sorted(name for name in request.query.keys() if len(request.query.getall(name)) > 1)
    if repeated:
        raise ValidationError(f"query parameter(s) given more than once: {', '.join(repeated)}")
    return dict(request.query)


def _refuse_query(request: web.Request) -> None:
    if request.query:
        raise ValidationError("POST requests carry their parameters in the JSON body, not the query")


async def _read_json(request: web.Request) -> Any:
    """Parse a JSON body strictly; an empty body is allowed (the spec's Key request is all-optional)."""
    timeout_s = request.app[BODY_TIMEOUT_KEY]
    try:
        async with asyncio.timeout(timeout_s):
            raw = await request.read()
    except TimeoutError:
        raise SlowBody(f"request body not received within {timeout_s:g} s") from None
    if not raw.strip():
        return None
    try:
        return parse_strict_json(raw)
    except StrictJsonError as exc:
        raise ValidationError(f"request body: {exc.message}") from None


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> web.Response:
    return _json(Error(message, details).to_json(), status=status)


@web.middleware
async def _error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure leaves as JSON with the spec's status codes; nothing leaks a stack trace."""
    try:
        return await handler(request)
    except Etsi014Error as exc:
        if exc.http_status != 503:  # 503s are logged, with their detail, where they arise
            log.info("%s %r refused (%d): %s", request.method, request.path, exc.http_status, exc.message)
        response = _error(exc.http_status, exc.message, exc.details)
        if isinstance(exc, SlowBody):
            response.force_close()
        return response
    except web.HTTPRequestEntityTooLarge:
        message = f"request body exceeds {request.app[MAX_BODY_KEY]} bytes"
        log.info("%s %r refused (400): %s", request.method, request.path, message)
        return _error(400, message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except ConnectionError:
        raise  # the caller has gone: there is nobody to answer (aiohttp drops the connection quietly)
    except Exception:
        log.exception("unexpected failure serving %s %s", request.method, request.path)
        return _error(503, "internal error in the KME")
