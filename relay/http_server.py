"""Start an aiohttp application on a socket we bind ourselves, so port 0 yields a known free port.

Every listener gets the same hardening, because what an answer or a stuck connection gives away does not
depend on the API it serves:

* a connection that delivers no complete request head within ``idle_timeout_s`` of connecting or of its
  last answer is closed (idle clients and slow, slowloris-style ones alike), and a TLS handshake must end
  within ``handshake_timeout_s``;
* a request too malformed for aiohttp to parse gets a JSON ``{"message": ...}`` 400 that never echoes the
  input, and costs one INFO log line, not a traceback;
* no ``Server`` header names the software or its version.

With ``reuse_port`` the socket is bound with ``SO_REUSEPORT``: the replicas of one gateway then listen on
the same port and the kernel spreads incoming connections over them (each connection stays with the
replica that accepted it). Without it, a port already taken fails the start, as it should.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger(__name__)

SERVER_NAME = "qkd-relay"  # the Server header of every answer: no version for a scanner to match
MALFORMED_REQUEST = "malformed HTTP request"

_access_log = logging.getLogger("relay.http_server.access")
_access_log.disabled = True  # requests are logged by the APIs that understand them, not per line here


@dataclass(frozen=True)
class ListenerLimits:
    """How long a connection may hold a listener's resources without delivering a request.

    The idle timeout exceeds the 15 s for which aiohttp clients (ours included) keep an idle connection for
    reuse, so the server never closes a connection that a client may be reusing at that very moment.
    """

    idle_timeout_s: float = 20.0
    handshake_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.idle_timeout_s <= 0 or self.handshake_timeout_s <= 0:
            raise ValueError("listener timeouts must be positive")


@dataclass
class RunningSite:
    runner: web.AppRunner
    host: str
    port: int
    listener: asyncio.Server = field(repr=False)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    async def stop(self) -> None:
        self.listener.close()  # no new connections
        await self.runner.cleanup()  # closes the open ones
        await self.listener.wait_closed()


class _HardenedRequestHandler(RequestHandler):
    """aiohttp's connection handler, with its answer to unparseable requests replaced (see the module)."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status == 400:
            log.info("%s from %s refused (%s)", MALFORMED_REQUEST, request.remote, type(exc).__name__)
            text = MALFORMED_REQUEST
        else:  # a handler escaped its application's own error handling: a bug, worth its traceback
            log.error("failure serving a request from %s", request.remote, exc_info=exc)
            text = "internal error"
        response = web.json_response({"message": text}, status=status, headers={"Server": SERVER_NAME})
        response.force_close()
        return response


async def _anonymous_server(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_NAME


async def start_site(
    app: web.Application,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    limits: ListenerLimits | None = None,
    *,
    reuse_port: bool = False,
) -> RunningSite:
    limits = limits or ListenerLimits()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    app.on_response_prepare.append(_anonymous_server)
    runner = web.AppRunner(app)
    await runner.setup()
    manager = runner.server
    assert manager is not None
    loop = asyncio.get_running_loop()

    def connection() -> RequestHandler:
        # aiohttp arms its keep-alive timer on connect and after every answer, and closes the connection if
        # no complete request has arrived when it fires: with it set to the idle timeout, that is our rule.
        # After an answer to a request whose body is still unread, it drains ("lingers") before closing:
        # bounded by the same timeout, so a trickled body cannot hold the connection either.
        return _HardenedRequestHandler(
            manager,
            loop=loop,
            keepalive_timeout=limits.idle_timeout_s,
            lingering_time=limits.idle_timeout_s,
            access_log=_access_log,
        )

    server = await loop.create_server(
        connection,
        sock=sock,
        ssl=ssl_context,
        ssl_handshake_timeout=limits.handshake_timeout_s if ssl_context else None,
        backlog=128,
    )
    return RunningSite(runner, host, sock.getsockname()[1], server)
