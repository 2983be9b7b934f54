"""A loopback TCP forwarder between two gateways' gRPC channels that a test can cut and heal.

Cut as a firewall dropping the port would: existing connections die, new ones hang. With ``upstream_tls``
it originates TLS itself, so a plain (insecure) gRPC channel to it reaches a TLS server over whatever TLS
the test's context allows: a real gRPC client over TLS 1.2, which grpcio cannot be told to negotiate.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl


class TcpProxy:
    """Loopback TCP forwarder to ``target_port``; :meth:`cut` blackholes it, :meth:`heal` restores it.

    Cut: every open connection is reset and new ones are accepted but never answered (like a firewall
    dropping the port: the TLS handshake, and so every RPC, runs into its deadline). Heal: the held
    connections are reset too, so clients reconnect through a working path.
    """

    def __init__(
        self,
        target_port: int,
        host: str = "127.0.0.1",
        *,
        upstream_tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.host, self.target_port = host, target_port
        self._upstream_tls, self._server_hostname = upstream_tls, server_hostname
        self.port = 0
        self._blocked = False
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._reset_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self._blocked = True
        self._reset_all()

    def heal(self) -> None:
        self._blocked = False
        self._reset_all()

    def _reset_all(self) -> None:
        for writer in list(self._open):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._open.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        if self._blocked:
            return  # held open, never answered, reset on heal
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.host, self.target_port, ssl=self._upstream_tls, server_hostname=self._server_hostname
            )
        except OSError:
            self._open.discard(writer)
            writer.transport.abort()
            return
        self._open.add(upstream_writer)
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self._blocked:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._open.discard(writer)
            writer.transport.abort()
