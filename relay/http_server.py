"""Start an aiohttp application on a socket we bind ourselves, so port 0 yields a known free port."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from aiohttp import web


@dataclass
class RunningSite:
    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_site(app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None) -> RunningSite:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    return RunningSite(runner, host, sock.getsockname()[1])
