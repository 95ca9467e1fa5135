"""A tiny real HTTP/1.1 server for webhook tests: records requests, answers from a script."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookServer:
    """Answers each POST with the next status in ``script`` (then 200), keeping what it got.

    While ``gate`` is given and not set, requests are recorded but not answered (a receiver that
    hangs), so a test can stop a sender in the middle of a POST.
    """

    script: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    delivered: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event | None = None
    url: str = ""
    # Delivery ids of the requests answered 2xx (what a receiver would have accepted).
    accepted: list[str] = field(default_factory=list)

    def accepted_counts(self) -> Counter[str]:
        return Counter(self.accepted)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode()
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode()) not in ("\r\n", "\n", ""):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(request_line.split()[1], headers, body))
            if self.gate is not None:
                await self.gate.wait()
            code = self.script.pop(0) if self.script else 200
            writer.write(f"HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            if code == 200:
                self.accepted.append(headers.get("x-gridwire-delivery", ""))
                self.delivered.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the sender went away (stopped or killed in the middle of a POST)
        finally:
            writer.close()


@asynccontextmanager
async def webhook_server(script: list[int] | None = None, *, port: int = 0,
                         gate: asyncio.Event | None = None) -> AsyncIterator[WebhookServer]:
    hook = WebhookServer(script=list(script or []), gate=gate)
    server = await asyncio.start_server(hook._serve, "127.0.0.1", port)  # noqa: SLF001
    port = server.sockets[0].getsockname()[1]
    hook.url = f"http://127.0.0.1:{port}/hooks/gridwire"
    async with server:
        yield hook
