"""The ETSI GS QKD 020 V1.1.1 HTTP surface: versions, ext_keys, ext_keys/ack, ext_keys/void.

Like the 014 front end, this module owns only HTTP: the calling KME's identity from its certificate,
strict JSON, the asynchronous mode (202 now, acks POSTed to ``ack_callback_url`` later) and the optional
synchronous mode (200 with ``ack_containers``), and RFC 9457 problem details for every failure, sent as
``application/json`` like every 020 body (the spec's Table 1 and each documented error response). What a
key transfer means is the backend's business (:class:`InterKmsBackend`).

Rejections that happen before 202 (400, 401, 503) leave no association behind, as the spec requires:
the backend's ``check`` must not store anything, and a request with an ``extension_mandatory`` member
this KME does not implement is refused (503) before the backend sees it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web

from relay.etsi020.models import (
    MAX_BODY_BYTES,
    SYNCHRONOUS_MODE,
    AckContainer,
    ExtKeyContainer,
    VersionContainer,
    VoidContainer,
    parse_ack_containers,
)
from relay.etsi020.openapi import etsi020_document
from relay.etsi020.problems import (
    ACK_NOT_UNDERSTOOD,
    HTTP_STATUS_ONLY,
    INVALID_PARAMETER,
    SERVER_SIDE_ERROR,
    UNAUTHORIZED,
    UNSUPPORTED_MANDATORY_EXTENSION,
    VOID_NOT_UNDERSTOOD,
    Problem,
    ProblemType,
)
from relay.openapi_frame import OPENAPI_PATH
from relay.pki.tls import ExpectedPeer, peer_identity
from relay.strict_json import StrictJsonError, parse_strict_json

log = logging.getLogger(__name__)

API_VERSIONS = ("v1",)
CALLER_ROLES = ("gateway", "kme")  # the certificate roles that may speak 020 (see _calling_kme)
_NOT_UNDERSTOOD_BY_PATH = {"/kmapi/v1/ext_keys/ack": ACK_NOT_UNDERSTOOD, "/kmapi/v1/ext_keys/void": VOID_NOT_UNDERSTOOD}


class InterKmsBackend(Protocol):
    """What the gateway does with keys another KME hands over, and with acks for keys it handed over."""

    async def check_ext_keys(self, caller: str, request: ExtKeyContainer) -> None:
        """Refuse (raise Problem) what can be refused at once; must keep no association with the keys.

        Its ``extension_mandatory`` members are all among the names the app was created to support;
        ``extension_optional`` arrives exactly as the caller sent it, to be passed on unchanged.
        """
        ...

    async def deliver(self, caller: str, request: ExtKeyContainer) -> list[AckContainer]:
        """Relay the keys to their targets; the acks say, per key, whether that succeeded."""
        ...

    async def acknowledged(self, caller: str, acks: Sequence[AckContainer]) -> None:
        """Acks from a KME we handed keys to; raise Problem(400, key-not-present) for unknown keys."""
        ...

    async def check_void(self, caller: str, request: VoidContainer) -> None:
        """Refuse (raise Problem) a void that cannot be carried out (unknown target, not the caller's keys),
        before the asynchronous mode answers 202 and the caller would wait for acks that never come."""
        ...

    async def void(self, caller: str, request: VoidContainer) -> list[AckContainer]:
        """Void the keys; the acks say, per key_ID, how. Nothing to void is ``[]``, sent like any answer."""
        ...


AckSender = Callable[[str, str, list[AckContainer]], Awaitable[None]]
"""Delivers acks to an ``ack_callback_url``: ``(caller, callback_url, acks)``. ``caller`` is the KME (or
gateway) that sent the request, by its certificate; the callback must be that same entity's server
(:func:`callback_peer`), so acks, and the key_IDs they name, reach no one else.

The server calls it once and only logs a failure, so retrying, or voiding what could not be acknowledged
(as the spec requires of a failed ext_keys/ack), is the sender's job.
"""

BACKEND_KEY = web.AppKey("etsi020_backend", InterKmsBackend)
ACK_SENDER_KEY: web.AppKey[AckSender] = web.AppKey("etsi020_ack_sender")
MANDATORY_EXTENSIONS_KEY = web.AppKey("etsi020_mandatory_extensions", frozenset)
TASKS_KEY = web.AppKey("etsi020_tasks", set)
MAX_BODY_KEY = web.AppKey("etsi020_max_body_bytes", int)


def create_app(
    backend: InterKmsBackend,
    ack_sender: AckSender,
    *,
    supported_mandatory_extensions: Collection[str] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
) -> web.Application:
    """``supported_mandatory_extensions`` names the ``extension_mandatory`` members the backend implements.

    Any other mandatory extension makes ext_keys fail before the backend sees the request.
    """
    app = web.Application(client_max_size=max_body_bytes, middlewares=[_problem_middleware])
    app[BACKEND_KEY] = backend
    app[ACK_SENDER_KEY] = ack_sender
    app[MANDATORY_EXTENSIONS_KEY] = frozenset(supported_mandatory_extensions)
    app[TASKS_KEY] = set()
    app[MAX_BODY_KEY] = max_body_bytes
    app.router.add_get("/kmapi/versions", _versions)
    app.router.add_post("/kmapi/v1/ext_keys", _ext_keys)
    app.router.add_post("/kmapi/v1/ext_keys/ack", _ack)
    app.router.add_post("/kmapi/v1/ext_keys/void", _void)
    app.router.add_get(OPENAPI_PATH, _openapi)
    app.on_shutdown.append(_finish_background_work)
    return app


async def _versions(request: web.Request) -> web.Response:
    _calling_kme(request)
    return web.json_response(VersionContainer(API_VERSIONS, (SYNCHRONOUS_MODE,)).to_json())


async def _openapi(request: web.Request) -> web.Response:
    """The OpenAPI document of this interface, for any authenticated KME or gateway."""
    _calling_kme(request)
    return web.json_response(etsi020_document())


async def _ext_keys(request: web.Request) -> web.StreamResponse:
    caller = _calling_kme(request)
    container = ExtKeyContainer.from_json(await _read_json(request))
    _refuse_unsupported_mandatory_extensions(request.app[MANDATORY_EXTENSIONS_KEY], container)
    backend = request.app[BACKEND_KEY]
    await backend.check_ext_keys(caller, container)
    return await _respond(request, caller, container.ack_callback_url, lambda: backend.deliver(caller, container))


def _refuse_unsupported_mandatory_extensions(supported: frozenset[str], container: ExtKeyContainer) -> None:
    """The spec (schema ``extension_mandatory``): handle every mandatory extension or reject with a 503
    whose ``details`` has an ``unsupported_mandatory_extension`` entry. Checked before the backend, so
    no key is associated."""
    unsupported = sorted(set(container.extension_mandatory or ()) - supported)
    if unsupported:
        raise Problem(
            503,
            UNSUPPORTED_MANDATORY_EXTENSION,
            {
                "unsupported_mandatory_extension": f"not supported by this KME: {', '.join(unsupported)}",
            },
        )


async def _void(request: web.Request) -> web.StreamResponse:
    caller = _calling_kme(request)
    container = VoidContainer.from_json(await _read_json(request))
    backend = request.app[BACKEND_KEY]
    await backend.check_void(caller, container)
    return await _respond(request, caller, container.ack_callback_url, lambda: backend.void(caller, container))


async def _ack(request: web.Request) -> web.Response:
    caller = _calling_kme(request)
    acks = parse_ack_containers(await _read_json(request))
    await request.app[BACKEND_KEY].acknowledged(caller, acks)
    return web.Response(status=200)


async def _respond(
    request: web.Request, caller: str, callback_url: str | None, work: Callable[[], Awaitable[list[AckContainer]]]
) -> web.StreamResponse:
    """Synchronous mode answers 200 with the acks; asynchronous mode answers 202 and posts them later."""
    if callback_url is None:
        return web.json_response([ack.to_json() for ack in await work()])
    task = asyncio.create_task(_work_then_ack(request.app[ACK_SENDER_KEY], caller, callback_url, work))
    tasks: set[asyncio.Task[None]] = request.app[TASKS_KEY]
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return web.Response(status=202)


async def _work_then_ack(
    send: AckSender, caller: str, callback_url: str, work: Callable[[], Awaitable[list[AckContainer]]]
) -> None:
    try:
        await send(caller, callback_url, await work())  # [] too: the caller waits for an answer either way
    except Exception:
        # Retrying or voiding is the backend's and the sender's business; here nothing may die silently.
        log.exception("asynchronous 020 work for %s failed", callback_url)


async def _finish_background_work(app: web.Application) -> None:
    tasks: set[asyncio.Task[None]] = app[TASKS_KEY]
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def callback_peer(caller: str) -> ExpectedPeer:
    """The server a 020 client calling back ``caller`` must reach: the identity read from its certificate."""
    return ExpectedPeer(CALLER_ROLES, caller)


def _calling_kme(request: web.Request) -> str:
    """The calling KME or gateway, from its verified certificate (either role may speak 020)."""
    peercert = request.transport.get_extra_info("peercert") if request.transport else None
    caller = peer_identity(peercert, "gateway") or peer_identity(peercert, "kme")
    if caller is None:
        raise Problem(401, UNAUTHORIZED, {"unauthorized": "the client certificate does not identify a KME"})
    return caller


async def _read_json(request: web.Request) -> Any:
    try:
        return parse_strict_json(await request.read())
    except StrictJsonError as exc:
        raise Problem(400, INVALID_PARAMETER, {exc.kind: exc.message}) from None


def _problem(problem: Problem, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(problem.to_json(), status=problem.status, content_type="application/json", headers=headers)


@web.middleware
async def _problem_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return _problem(problem)
    except web.HTTPRequestEntityTooLarge:
        # No 020 operation documents 413: a body no valid request can fill is a malformed request.
        kind = _NOT_UNDERSTOOD_BY_PATH.get(request.path, INVALID_PARAMETER)
        limit = request.app[MAX_BODY_KEY]
        details = {"request_too_large": f"the body exceeds {limit} bytes, more than any valid request carries"}
        return _problem(Problem(400, kind, details))
    except web.HTTPException as exc:
        # Not the spec's own errors (unknown path or method): RFC 9457 about:blank, titled with the status
        # phrase. Allow (405) is kept, as RFC 9110 requires.
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _problem(Problem(exc.status, ProblemType(HTTP_STATUS_ONLY.uri, exc.reason)), headers)
    except Exception:
        log.exception("unexpected failure serving %s %s", request.method, request.path)
        return _problem(Problem(503, SERVER_SIDE_ERROR, {"server_side_general_error": "internal error"}))
