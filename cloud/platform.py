"""The assembled cloud platform: the full web app and every cloud process, from one settings object.

``create_platform_app(settings)`` is what ``gridwire cloud api`` serves: the OMDP meter-reading
API, the admin and installation API, every functional domain's API, the clock-drift API and
the firmware and campaign API, behind one JWT check. Nothing is built at import time: the lifespan migrates the registry,
opens it, and connects the command store, the MQTT session and the dead-letter store, so a
test or the demo points them anywhere through the settings.

``process_runner(name, settings)`` gives the ``run(stop)`` coroutine of each other process
(``core``, ``domain``, ``scheduler``, ``monitor``, ``timesync``, ``campaigns``); start as many
copies of each as load needs: they share their work through MQTT shared subscriptions (the
campaign runners through leases and compare-and-set in the database).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from pydantic import Field, SecretStr

from broker.session import Backoff
from cloud.api.app import create_app
from cloud.api.deps import Clock
from cloud.auth import AuthError, Principal, decode_token
from cloud.core.commands import CommandStore
from cloud.core.service import BrokerLogin, run_core
from cloud.deadletters import DeadLetterStore
from cloud.domains.service import run_domain
from cloud.notify.delivery import DeliveryPolicy
from cloud.registry import Registry, migrate
from cloud.registry.db import create_engine, is_sqlite
from cloud.scheduler import ScheduleStore
from cloud.settings import Settings
from cloud.store import InfluxStore

log = logging.getLogger(__name__)

Runner = Callable[[asyncio.Event], Awaitable[None]]


class PlatformSettings(Settings):
    """Settings of the whole cloud platform; e.g. ``GRIDWIRE_REGISTRY_URL``, ``GRIDWIRE_MQTT_HOST``."""

    # The registry, command lifecycle, schedules, monitoring and dead letters share this database.
    registry_url: str = "sqlite+aiosqlite:///var/gridwire.sqlite"
    # PostgreSQL connection pool per process (ignored on SQLite).
    registry_pool_size: int = Field(default=10, ge=1)
    # Extra connections are opened and closed per use: under load that costs more than waiting.
    registry_max_overflow: int = Field(default=0, ge=0)
    # The API brings the schema to the newest revision at start; other processes never do.
    migrate_on_start: bool = True

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = "gridwire-cloud"
    mqtt_password: SecretStr | None = None
    # How many QoS 1 messages each process has in flight in each direction, so handled at once.
    # A few times the database pool: enough to keep it busy, few enough that no handler waits
    # for a connection anywhere near the pool timeout when the database is slow.
    mqtt_inflight: int = Field(default=100, ge=1, le=65535)
    registry_pool_timeout: float = Field(default=60.0, gt=0)
    # Client id of the API's session; default: host and process id (unique per process).
    api_client_id: str | None = None

    # Firmware OTA: where verified images live (shared with `gridwire cloud firmware-server`), and
    # the public keys whose signatures are trusted: PEM files and/or directories of *.pem,
    # separated by commas. Signing keys never come near the cloud.
    firmware_store_dir: Path = Path("var/firmware")
    firmware_trusted_keys: str = ""

    # Concentrator provisioning (cloud/api_admin/provisioning.py): the CA's directory (ca.pem,
    # ca.key; None refuses provisioning), the broker's mutual-TLS address given to concentrators,
    # and broker usernames besides mqtt_username that no certificate may carry (comma-separated).
    pki_dir: Path | None = None
    provision_broker_host: str = "localhost"
    provision_broker_port: int = Field(default=8883, ge=1, le=65535)
    broker_reserved_names: str = ""

    # Webhooks (cloud/notify): a notification is tried this many times over about an hour
    # (backoff doubling from 1 s to webhook_backoff_max_seconds); delivered ones are deleted
    # from the outbox after webhook_retention_hours.
    webhook_max_attempts: int = Field(default=15, ge=1)
    webhook_backoff_max_seconds: float = Field(default=600.0, gt=0)
    webhook_retention_hours: float = Field(default=24.0, gt=0)

    def trusted_key_paths(self) -> list[Path]:
        return [Path(p.strip()) for p in self.firmware_trusted_keys.split(",") if p.strip()]

    def broker_login(self) -> BrokerLogin:
        """Where and as whom the platform's processes connect to the broker."""
        return BrokerLogin(host=self.mqtt_host, port=self.mqtt_port, username=self.mqtt_username,
                           password=self.mqtt_password.get_secret_value() if self.mqtt_password else None,
                           inflight=self.mqtt_inflight)

    def webhook_policy(self) -> DeliveryPolicy:
        """How the domain processes' delivery loops send webhooks."""
        return DeliveryPolicy(max_attempts=self.webhook_max_attempts,
                              backoff=Backoff(initial=1.0, maximum=self.webhook_backoff_max_seconds),
                              retention=timedelta(hours=self.webhook_retention_hours))

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments for the registry's engine (a pool on PostgreSQL)."""
        if is_sqlite(self.registry_url):
            return {}
        # No ping per checkout (a round trip per transaction); a dropped connection is recycled
        # by the pool's own error handling and the message is redelivered.
        return {"pool_size": self.registry_pool_size, "max_overflow": self.registry_max_overflow,
                "pool_timeout": self.registry_pool_timeout, "pool_pre_ping": False}


def registry_meter_access(app: FastAPI) -> Callable[[Principal], Awaitable[frozenset[str] | None]]:
    """Meter-data access decided by the registry: every meter for ``admin``, else what the
    organisation holds OWNER, AD_HOC or MONITORING on."""

    async def access(principal: Principal) -> frozenset[str] | None:
        if principal.admin:
            return None
        registry: Registry = app.state.registry
        return frozenset(await registry.meters_for_org(principal.org))

    return access


async def principal_org(request: Request) -> str:
    """The calling organisation, from its verified bearer token (replaces ``current_org``).

    The same check as :func:`cloud.api.deps.get_principal`, without sub-dependencies: FastAPI
    re-analyses an overriding dependency's whole tree on every request.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})
    settings: Settings = request.app.state.settings
    assert settings.jwt_secret is not None  # create_app refuses to build without one
    try:
        principal = decode_token(token.strip(), secret=settings.jwt_secret.get_secret_value(),
                                 now=request.app.state.clock(), issuer=settings.jwt_issuer)
    except AuthError as exc:
        reason = str(exc).replace('"', "'")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, reason, headers={
            "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{reason}"'}) from exc
    return principal.org


def create_platform_app(settings: PlatformSettings, *, store: InfluxStore | None = None,
                        clock: Clock | None = None) -> FastAPI:
    """The full cloud web app. ``store`` (InfluxDB) as in :func:`cloud.api.app.create_app`."""
    from cloud.api_admin import current_org
    from cloud.api_admin import router as admin_router
    from cloud.domains.catalogue import routers as domain_routers
    from cloud.timesync.router import router as drift_router
    from cloud.timesync.store import DriftStore
    from firmware_ota.api import router as firmware_router

    app = create_app(settings=settings, store=store, clock=clock,
                     extra_routers=[admin_router, *domain_routers(), drift_router, firmware_router])
    app.title = "Gridwire platform API"
    app.state.meter_access = registry_meter_access(app)
    app.dependency_overrides[current_org] = principal_org
    app.state.registry = app.state.commands = app.state.mqtt = None
    app.state.drift_store = app.state.dead_letters = app.state.schedules = None
    store_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as exits:
            await exits.enter_async_context(store_lifespan(app))
            if settings.migrate_on_start:
                await migrate(settings.registry_url)
            registry = await exits.enter_async_context(_owned_registry(settings))
            session = settings.broker_login().session(
                "api", client_id=settings.api_client_id or f"gridwire-api-{socket.gethostname()}-{os.getpid()}")
            # Publish-only: nothing needs to be queued for it while it is away.
            await exits.enter_async_context(session)
            dead_letters = DeadLetterStore(engine=registry.engine)
            await dead_letters.create_schema()
            app.state.registry = registry
            app.state.commands = CommandStore(registry.engine)
            app.state.mqtt = session
            app.state.drift_store = DriftStore(registry.engine)
            app.state.dead_letters = dead_letters
            app.state.schedules = ScheduleStore(registry.engine)
            exits.callback(_clear, app)
            log.info("platform API ready (registry %s, broker %s:%d)", _safe_url(settings.registry_url),
                     settings.mqtt_host, settings.mqtt_port)
            yield

    app.router.lifespan_context = lifespan
    return app


@asynccontextmanager
async def _owned_registry(settings: PlatformSettings) -> AsyncIterator[Registry]:
    """A Registry on its own pooled engine, disposed on exit."""
    engine = create_engine(settings.registry_url, **settings.engine_options())
    try:
        yield Registry(engine=engine)
    finally:
        await engine.dispose()


def _clear(app: FastAPI) -> None:
    app.state.registry = app.state.commands = app.state.mqtt = None
    app.state.drift_store = app.state.dead_letters = app.state.schedules = None


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    return make_url(url).render_as_string(hide_password=True)


# --- the other processes ------------------------------------------------------------------------


def _core(settings: PlatformSettings, ready: asyncio.Event | None = None) -> Runner:
    return lambda stop: run_core(stop, registry_url=settings.registry_url, broker=settings.broker_login(),
                                 engine_options=settings.engine_options(), ready=ready)


def _domain(settings: PlatformSettings, ready: asyncio.Event | None = None) -> Runner:
    return lambda stop: run_domain(stop, registry_url=settings.registry_url, broker=settings.broker_login(),
                                   engine_options=settings.engine_options(), ready=ready,
                                   webhook_policy=settings.webhook_policy())


def _mqtt_fields(settings: PlatformSettings) -> dict[str, object]:
    return {"mqtt_host": settings.mqtt_host, "mqtt_port": settings.mqtt_port,
            "mqtt_username": settings.mqtt_username or "", "mqtt_password": settings.mqtt_password,
            "registry_url": settings.registry_url}


def _scheduler(settings: PlatformSettings) -> Runner:
    from cloud.scheduler.process import SchedulerSettings, run_scheduler
    chosen = SchedulerSettings(**_mqtt_fields(settings))
    return lambda stop: run_scheduler(chosen, stop)


def _monitor(settings: PlatformSettings) -> Runner:
    from cloud.monitoring.process import MonitorSettings, run_monitor
    chosen = MonitorSettings(**_mqtt_fields(settings))
    return lambda stop: run_monitor(chosen, stop)


def _timesync(settings: PlatformSettings) -> Runner:
    from cloud.timesync.process import TimeSyncSettings, run_timesync
    chosen = TimeSyncSettings(**_mqtt_fields(settings))
    return lambda stop: run_timesync(chosen, stop)


def _campaigns(settings: PlatformSettings) -> Runner:
    from firmware_ota.process import CampaignRunnerSettings, run_campaigns
    chosen = CampaignRunnerSettings(**_mqtt_fields(settings))
    return lambda stop: run_campaigns(chosen, stop)


PROCESSES: Mapping[str, Callable[[PlatformSettings], Runner]] = MappingProxyType({
    "core": _core, "domain": _domain, "scheduler": _scheduler, "monitor": _monitor, "timesync": _timesync,
    "campaigns": _campaigns,
})
# Processes that can say when they are subscribed (the command path needs it before traffic).
SIGNALS_READY = frozenset({"core", "domain"})


def process_runner(name: str, settings: PlatformSettings, *, ready: asyncio.Event | None = None) -> Runner:
    """The ``run(stop)`` coroutine function of the platform process ``name`` (see :data:`PROCESSES`);
    ``ready`` (core and domain only) is set once the process is subscribed."""
    if name not in PROCESSES:
        raise ValueError(f"no platform process {name!r}; choose from {', '.join(PROCESSES)}")
    if ready is None:
        return PROCESSES[name](settings)
    if name not in SIGNALS_READY:
        raise ValueError(f"process {name!r} does not signal readiness")
    return (_core if name == "core" else _domain)(settings, ready)


async def migrate_registry(settings: PlatformSettings) -> str | None:
    """Bring the platform database to the newest schema (what the API does at start)."""
    return await migrate(settings.registry_url)


__all__ = ["PROCESSES", "PlatformSettings", "create_platform_app", "migrate_registry",
           "principal_org", "process_runner", "registry_meter_access"]
