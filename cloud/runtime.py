"""What every cloud process is built from at run time: its MQTT session, its database and InfluxDB.

Each ``gridwire cloud ...`` process is ``run_<name>(settings, stop, *, ready=None)`` in its
package's ``process.py``: it builds its collaborators here from ``settings``, sets ``ready``
once it is subscribed (or serving), and returns after ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.metrics import Registry as MetricsRegistry
from broker.metrics import process_metrics
from broker.metrics_http import serving
from broker.redelivery import is_transient
from broker.sealing import KeyRing
from broker.schemas import DeadLetter
from broker.session import DeadLetterSink, Message, MqttSession
from cloud.deadletters import DeadLetterStore
from cloud.registry import Registry
from cloud.registry.db import create_engine
from cloud.settings import CloudSettings, DatabaseSettings, InfluxSettings, MetricsSettings, MqttSettings
from cloud.store import InfluxStore

log = logging.getLogger(__name__)


class Run(Protocol):
    """The shape of every cloud process: run until ``stop``; set ``ready`` once serving."""

    async def __call__(self, settings: Any, stop: asyncio.Event, *,  # noqa: ANN401 - each process its own settings
                       ready: asyncio.Event | None = None) -> None: ...


def default_client_id(role: str) -> str:
    """``gridwire-<role>-<host>-<pid>``: unique per process, new on each start (a container
    keeps its hostname, a pid changes). Set ``mqtt.client_id`` to resume a durable session."""
    return f"gridwire-{role}-{socket.gethostname()}-{os.getpid()}"


def transient(exc: Exception) -> bool:
    """Whether a handler failed for want of a collaborator, so its message waits (redelivered
    however long that takes) and is never dead-lettered for it: the session's rule
    (``Unavailable``, an ``OSError``) plus the database down, restarting or out of connections."""
    if is_transient(exc):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        # OperationalError: cannot connect, server shutting down, SQLite locked; InterfaceError:
        # the connection went away; otherwise the connection was found broken mid-statement.
        return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or exc.connection_invalidated
    return isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError)  # pool checkout timed out


def dead_letter_sink(role: str, store: DeadLetterStore) -> DeadLetterSink:
    """Where a ``role`` process's session puts a message its handler kept failing on: a record
    with the reason in ``store`` (the table is made on first use, so starting needs no database)."""
    schema_made = False

    async def dead_letter(message: Message, reason: str) -> None:
        nonlocal schema_made
        if not schema_made:
            await store.create_schema()
            schema_made = True
        await store.add(DeadLetter.of(topic=message.topic, payload=bytes(message.payload), reason=reason,
                                      received_at=datetime.now(UTC), consumer=role))

    return dead_letter


# Container allocations between the collector's youngest-generation passes (CPython's default: 700).
_GC_YOUNG = 20_000


def steady_heap() -> None:
    """For a process that handles a stream of messages, before it runs (``gridwire cloud
    ingest``; not for processes run side by side in one interpreter): what start-up made (modules, settings, models: hundreds of thousands of objects) leaves the cyclic
    collector's generations (``gc.freeze``), and its youngest generation is collected after
    more allocations. Each message's objects are freed by reference counting; the collector's
    full passes over the start-up heap were a quarter of ingest's CPU at one reading per
    message (bench/ingest.py: 33 -> 23 us per reading)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG, middle, old)


def mqtt_session(role: str, settings: MqttSettings, *, dead_letters: DeadLetterStore | None = None,
                 **options: Any) -> MqttSession:  # noqa: ANN401
    """The MQTT session of a ``role`` process (``ingest``, ``core``, ...): login, TLS and the
    in-flight limit from ``settings``; a message its handlers keep failing on (not for want of
    a collaborator: see :func:`transient`) goes to ``dead_letters`` (None: it is redelivered
    for ever); ``options`` are the process's own (``session_expiry``, ``payload_views``, a
    larger ``receive_maximum``)."""
    client_id = settings.client_id or default_client_id(role)
    chosen: dict[str, Any] = {"receive_maximum": settings.inflight, "max_inflight": settings.inflight, **options}
    tls = settings.tls()
    log.info("%s: MQTT client %s to %s:%d as %s (%s), %d in flight, receive maximum %d", role, client_id,
             settings.host, settings.port, settings.username, "TLS" if tls else "plain", chosen["max_inflight"],
             chosen["receive_maximum"])
    sink = dead_letter_sink(role, dead_letters) if dead_letters is not None else None
    return MqttSession(client_id=client_id, host=settings.host, port=settings.port, username=settings.username,
                       password=settings.secret(), tls=tls, dead_letter=sink, transient=transient, **chosen)


def database_engine(role: str, settings: DatabaseSettings) -> AsyncEngine:
    """The database engine of a ``role`` process, pooled as ``settings`` say (the caller disposes it)."""
    options = settings.engine_options()
    engine = create_engine(settings.url, **options)
    pool = (f"{settings.pool_size} + {options['max_overflow']} (and {engine.pool.size() - settings.pool_size} "
            "its writers keep)") if options else "unsized (SQLite)"
    log.info("%s: database %s, pool %s", role, settings.safe_url(), pool)
    return engine


def influx_store(settings: InfluxSettings, *, batch_size: int = 5000) -> InfluxStore:
    """The time-series store ``settings`` name (the caller closes it)."""
    return InfluxStore(url=settings.url, database=settings.database, username=settings.username,
                       password=settings.password.get_secret_value() if settings.password else None,
                       token=settings.token.get_secret_value() if settings.token else None,
                       timeout=settings.timeout, batch_size=batch_size)


@asynccontextmanager
async def open_engine(role: str, settings: DatabaseSettings) -> AsyncIterator[AsyncEngine]:
    """:func:`database_engine`, disposed on exit."""
    engine = database_engine(role, settings)
    try:
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def open_registry(role: str, settings: DatabaseSettings, *,
                        sealing: KeyRing | None = None) -> AsyncIterator[Registry]:
    """A Registry on the process's own engine, disposed on exit (``sealing``: the key ring it seals
    webhook secrets with, for a process that writes them). The schema must be migrated."""
    async with open_engine(role, settings) as engine:
        yield Registry(engine=engine, sealing=sealing)


@asynccontextmanager
async def connected_session(role: str, settings: MqttSettings, **options: Any) -> AsyncIterator[  # noqa: ANN401
        MqttSession]:
    """:func:`mqtt_session`, connected (ConnectError if the broker refuses), closed on exit."""
    session = mqtt_session(role, settings, **options)
    try:
        await session.connect()
        yield session
    finally:
        await session.close()


@asynccontextmanager
async def connected(role: str, settings: CloudSettings, **options: Any) -> AsyncIterator[  # noqa: ANN401
        tuple[MqttSession, Registry]]:
    """The process's registry and its connected MQTT session, both closed on exit; the
    session dead-letters into the registry's database."""
    async with open_registry(role, settings.database) as registry, \
            connected_session(role, settings.mqtt, dead_letters=DeadLetterStore(engine=registry.engine),
                              **options) as session:
        yield session, registry


@asynccontextmanager
async def metrics_registry(role: str, settings: MetricsSettings) -> AsyncIterator[MetricsRegistry]:
    """The process's metrics, served at ``/metrics`` while the block runs if ``settings.port``
    is set (the process's CPU and memory are in it already; the caller adds its own)."""
    registry = MetricsRegistry()
    process_metrics(registry, role)
    async with serving(registry, host=settings.host, port=settings.port, name=f"{role}-metrics"):
        yield registry


def session_metrics(registry: MetricsRegistry, session: MqttSession) -> None:
    """The MQTT session's connections, messages being handled and dead letters, read at scrape time."""
    registry.counter_fn("gridwire_mqtt_connections", "Connections the MQTT session made (1 + reconnects)",
                        lambda: session.connections)
    registry.gauge_fn("gridwire_mqtt_handling", "Received messages being handled, not yet acknowledged",
                      lambda: session.handling)
    registry.counter_fn("gridwire_mqtt_dead_letters", "Messages given up on after every delivery failed",
                        lambda: session.dead_lettered)


__all__ = ["Run", "connected", "connected_session", "database_engine", "dead_letter_sink", "default_client_id",
           "influx_store", "metrics_registry", "mqtt_session", "open_engine", "open_registry", "session_metrics",
           "transient"]


def api_event_loop(role: str = "API") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """An event loop for a cloud process (``role``) asked to run on uvloop: uvloop's when it is
    installed (a cloud dependency on Linux; about a tenth less CPU per API read than asyncio's own
    loop, bench/api_load.py), else None (asyncio's). No process asks by default: the bulk command
    path took two to three times the CPU a light on it (bench/README.md, issue 12)."""
    try:
        import uvloop
    except ImportError:
        log.info("uvloop is not installed: the %s runs on asyncio's own event loop", role)
        return None
    log.info("the %s runs on uvloop's event loop", role)
    return uvloop.new_event_loop
