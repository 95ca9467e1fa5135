"""Run one core process: the CoreRouter on its own MQTT session and the registry database.

Start as many as load needs (``gridwire cloud core``); they share the work through the
``$share/core/...`` subscriptions and the compare-and-set store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass

from broker.session import MqttSession
from cloud.core.commands import CommandStore
from cloud.core.router import CoreRouter, RetryPolicy
from cloud.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerLogin:
    """Where and as whom a cloud process connects to the broker."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None

    def session(self, role: str, *, client_id: str | None = None) -> MqttSession:
        # A stable id per host and process slot keeps the durable session across restarts.
        cid = client_id or f"gridwire-{role}-{socket.gethostname()}-{os.getpid()}"
        return MqttSession(client_id=cid, host=self.host, port=self.port, username=self.username,
                           password=self.password)


async def run_core(stop: asyncio.Event, *, registry_url: str, broker: BrokerLogin, client_id: str | None = None,
                   pump_interval: float = 0.5, retry: RetryPolicy = RetryPolicy()) -> None:
    """Serve the core until ``stop`` is set. The registry must already be migrated."""
    async with Registry(url=registry_url) as registry, broker.session("core", client_id=client_id) as session:
        router = CoreRouter(session=session, registry=registry, store=CommandStore(registry.engine), retry=retry,
                            pump_interval=pump_interval)
        await router.start()
        log.info("core consumer %s running", session.client_id)
        try:
            await stop.wait()
        finally:
            await router.close()
