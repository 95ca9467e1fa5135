"""Run one core process: the CoreRouter on its own MQTT session and the registry database.

Start as many as load needs (``gridwire cloud core``); they share the work through the
``$share/core/...`` subscriptions and the compare-and-set store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from broker.session import MqttSession
from cloud.core.commands import CommandStore
from cloud.core.router import CoreRouter, RetryPolicy
from cloud.registry import Registry
from cloud.registry.db import create_engine

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerLogin:
    """Where and as whom a cloud process connects to the broker."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    # QoS 1 messages in flight each way: a consumer handles this many messages concurrently.
    inflight: int = 1000

    def session(self, role: str, *, client_id: str | None = None) -> MqttSession:
        # A stable id per host and process slot keeps the durable session across restarts.
        cid = client_id or f"gridwire-{role}-{socket.gethostname()}-{os.getpid()}"
        return MqttSession(client_id=cid, host=self.host, port=self.port, username=self.username,
                           password=self.password, receive_maximum=self.inflight, max_inflight=self.inflight)


@asynccontextmanager
async def open_registry(url: str, engine_options: Mapping[str, Any] | None = None) -> AsyncIterator[Registry]:
    """A Registry on its own engine (pool sized by ``engine_options``), disposed on exit."""
    engine = create_engine(url, **dict(engine_options or {}))
    try:
        yield Registry(engine=engine)
    finally:
        await engine.dispose()


def handler_concurrency(engine_options: Mapping[str, Any] | None) -> int | None:
    """Messages a core handles at once for a database pool: one connection each, less one that
    the pump and the success writer find free. None (unbounded) without a sized pool (SQLite)."""
    options = engine_options or {}
    if "pool_size" not in options:
        return None
    connections = int(options["pool_size"]) + int(options.get("max_overflow", 0))
    return max(1, connections - 1)


async def run_core(stop: asyncio.Event, *, registry_url: str, broker: BrokerLogin, client_id: str | None = None,
                   pump_interval: float = 0.5, retry: RetryPolicy = RetryPolicy(),
                   engine_options: Mapping[str, Any] | None = None, ready: asyncio.Event | None = None) -> None:
    """Serve the core until ``stop`` is set (``ready`` is set once subscribed). The registry must
    already be migrated."""
    async with open_registry(registry_url, engine_options) as registry, \
            broker.session("core", client_id=client_id) as session:
        router = CoreRouter(session=session, registry=registry, store=CommandStore(registry.engine), retry=retry,
                            pump_interval=pump_interval, concurrency=handler_concurrency(engine_options))
        await router.start()
        log.info("core consumer %s running", session.client_id)
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            await router.close()
