"""Serves a :class:`~broker.metrics.Registry` at ``GET /metrics`` for Prometheus to scrape.

A few lines of HTTP/1.1 on ``asyncio.start_server``: one request per connection, answered and
closed, so no client can hold the process's loop. It binds loopback unless told otherwise; a
deployment that scrapes across hosts binds the private network (compose) or puts it behind
the same firewall as the node exporter. Every connection is a named task ended by ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from broker.metrics import Registry

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_MAX_REQUEST = 8192
_READ_TIMEOUT = 5.0


class MetricsServer:
    """``GET /metrics`` on ``host``:``port`` (0: any free port, see :attr:`port` once started)."""

    def __init__(self, *, registry: Registry, host: str = "127.0.0.1", port: int = 0, name: str = "metrics") -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._name = name
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.scrapes = 0

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the metrics server is not started")
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._port, limit=_MAX_REQUEST)
        log.info("%s: metrics on http://%s:%d/metrics", self._name, self._host, self.port)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer), name=f"{self._name}-scrape")
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            if method not in (b"GET", b"HEAD"):
                await _answer(writer, 405, b"GET only\n", allow=True)
            elif path != b"/metrics":
                await _answer(writer, 404, b"only /metrics is served here\n")
            else:
                body = await self._registry.render()
                self.scrapes += 1
                await _answer(writer, 200, b"" if method == b"HEAD" else body, content_type=CONTENT_TYPE,
                              length=len(body))
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a client that went away or never sent a request: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()


async def _answer(writer: asyncio.StreamWriter, status: int, body: bytes, *,
                  content_type: str = "text/plain; charset=utf-8", length: int | None = None,
                  allow: bool = False) -> None:
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n"
            + ("Allow: GET, HEAD\r\n" if allow else "") + "\r\n")
    writer.write(head.encode() + body)
    await writer.drain()


@asynccontextmanager
async def serving(registry: Registry, *, host: str, port: int | None, name: str) -> AsyncIterator[
        MetricsServer | None]:
    """Serve ``registry`` while the block runs, if ``port`` is set (None: metrics off)."""
    if port is None:
        yield None
        return
    server = MetricsServer(registry=registry, host=host, port=port, name=name)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


__all__ = ["CONTENT_TYPE", "MetricsServer", "serving"]
