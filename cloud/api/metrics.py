"""The web API's Prometheus metrics: request latency by method, route template and status.

A plain ASGI middleware (no per-request objects beyond one closure): the route is the template
FastAPI matched (``/v1/devices/{device_id}``), never the path, so a label never carries an id;
unmatched paths are counted as ``unmatched``.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.metrics import Registry

UNMATCHED = "unmatched"


class RequestMetrics:
    """ASGI middleware observing every HTTP request into ``gridwire_api_request_seconds``."""

    def __init__(self, app: ASGIApp, *, registry: Registry) -> None:
        self._app = app
        self._latency = registry.histogram("gridwire_api_request_seconds", "HTTP request latency",
                                           ["method", "route", "status"], max_series=1000)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED
            self._latency.labels(scope["method"], template, str(status)).observe(time.perf_counter() - started)
