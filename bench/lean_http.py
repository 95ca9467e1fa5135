"""A lean HTTP/1.1 keep-alive client for load benchmarks: one asyncio protocol per connection,
one request in flight on it at a time, the answer read by its ``Content-Length``.

httpx costs about 1.3 ms of CPU a request; on a 2-core machine the load generator then takes
the cores the server under test needs. This client builds the request bytes itself and parses
only the status line and the length, about a tenth of that. It is for benchmarks against our
own server only: no redirects, no chunked answers (refused), no TLS, no pooling beyond one
connection per :class:`Connection`.
"""

from __future__ import annotations

import asyncio


class AnswerError(Exception):
    """The server's answer could not be read (closed early, chunked, malformed)."""


class Connection(asyncio.Protocol):
    """One keep-alive connection; :meth:`request` sends raw request bytes and returns
    ``(status, body)``."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiting: asyncio.Future[tuple[int, bytes]] | None = None
        self._lost: Exception | None = None

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        _, connection = await asyncio.get_running_loop().create_connection(cls, host, port)
        return connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or AnswerError("the server closed the connection")
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_exception(self._lost)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiting = self._waiting
        if waiting is None or waiting.done():
            return
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        try:
            status, length = _head(bytes(self._buffer[:end]))
        except AnswerError as exc:
            waiting.set_exception(exc)
            return
        if len(self._buffer) < end + 4 + length:
            return
        body = bytes(self._buffer[end + 4:end + 4 + length])
        del self._buffer[:end + 4 + length]
        waiting.set_result((status, body))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self._lost is not None or self._transport is None:
            raise AnswerError("the connection is closed")
        self._waiting = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return await self._waiting

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _head(head: bytes) -> tuple[int, int]:
    """The status and the Content-Length of an answer's head."""
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise AnswerError(f"malformed status line {lines[0][:100]!r}") from None
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            raise AnswerError("chunked answers are not read by this client")
    if length is None:
        length = 0 if status in (204, 304) else None
    if length is None:
        raise AnswerError("an answer without Content-Length")
    return status, length


def get(host: str, path: str, headers: bytes) -> bytes:
    """A GET request's bytes; ``headers`` are extra ``Name: value\\r\\n`` lines."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n".encode() + headers + b"\r\n"


def post_json(host: str, path: str, headers: bytes, body: bytes) -> bytes:
    """A POST request's bytes with a JSON body."""
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n").encode() + headers + b"\r\n" + body
