"""Run one core process: the CoreDispatcher on its own MQTT session and the registry database.

Start as many as load needs (``gridwire cloud core``); they share the work through the
``$share/core/...`` subscriptions and the compare-and-set store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from cloud.core.commands import CommandStore
from cloud.core.dispatcher import CoreDispatcher
from cloud.core.lifecycle import RetryPolicy
from cloud.deadletters import DeadLetterStore
from cloud.core.metrics import CoreMetrics
from cloud.runtime import connected, metrics_registry, session_metrics
from cloud.held import HELD_PER_PROCESS
from cloud.settings import CloudSettings

log = logging.getLogger(__name__)

# The core reads only the sections every process has (GRIDWIRE_MQTT_*, GRIDWIRE_DATABASE_*).
CoreSettings = CloudSettings


def handler_concurrency(engine_options: Mapping[str, Any] | None) -> int | None:
    """Messages a core handles at once on its slow path (each holding a connection) for a database
    pool: the pool less the connections its writers keep (:data:`cloud.held.HELD_PER_PROCESS`) and
    less one that the other statements find free. None (unbounded) without a sized pool (SQLite)."""
    options = engine_options or {}
    if "pool_size" not in options:
        return None
    connections = int(options["pool_size"]) + int(options.get("max_overflow", 0))
    return max(1, connections - HELD_PER_PROCESS - 1)


async def run_core(settings: CoreSettings, stop: asyncio.Event, *, ready: asyncio.Event | None = None,
                   pump_interval: float = 0.5, retry: RetryPolicy = RetryPolicy()) -> None:
    """Serve the core until ``stop`` is set (``ready`` is set once subscribed). The database
    must already be migrated."""
    async with metrics_registry("core", settings.metrics) as metrics, \
            connected("core", settings) as (session, registry):
        session_metrics(metrics, session)
        # Malformed commands and answers are kept beside the commands, with the reason.
        dead_letters = DeadLetterStore(engine=registry.engine)
        await dead_letters.create_schema()
        dispatcher = CoreDispatcher(session=session, registry=registry, store=CommandStore(registry.engine),
                                    dead_letters=dead_letters, retry=retry, pump_interval=pump_interval,
                                    concurrency=handler_concurrency(settings.database.engine_options()),
                                    metrics=CoreMetrics(metrics))
        metrics.counter_fn("gridwire_core_commands_accepted", "New commands this process took in",
                           lambda: dispatcher.commands_accepted)
        await dispatcher.start()
        log.info("core consumer %s running", session.client_id)
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            await dispatcher.close()
