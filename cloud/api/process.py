"""The web API as a process (``gridwire cloud api``): the assembled app and its run.

``create_platform_app(settings)`` is the full web app: the OMDP meter-reading API, the admin
and installation API, every functional domain's API, the clock-drift API and the firmware and
campaign API, behind one JWT check. Nothing is built at import time: the lifespan migrates the
database, opens the registry, and connects the command store, the MQTT session and the
dead-letter store, so a test or the demo points them anywhere through the settings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from broker.dynsec import DynsecAccounts
from broker.errors import Invalid
from broker.metrics import Registry as MetricsRegistry
from broker.session import MqttSession, NegativeAckError
from cloud.accounts.service import AccountService
from cloud.accounts.store import AccountStore
from cloud.api.app import create_app
from cloud.api.deps import Clock
from cloud.api.identity import principal_org, registered_principal
from cloud.api.metrics import RequestMetrics
from cloud.api.routes import PLATFORM_ROUTERS
from cloud.api.oidc import JwksVerifier
from cloud.api.routes.provisioning import reserved_names
from cloud.auth import Principal
from cloud.deadletters import DeadLetterStore
from cloud.domains.requests import RequestStore
from cloud.migrations import migrate
from cloud.registry import DeviceFunction, NotAuthorised, Registry
from cloud.registry.functions import within_scope
from cloud.registry import webhook_secrets
from cloud.registry.secrets import DeviceSecrets
from cloud.runtime import connected_session, metrics_registry, open_registry
from cloud.scheduler import ScheduleStore
from cloud.settings import ApiSettings
from cloud.store import InfluxStore
from cloud.timesync.store import DriftStore

log = logging.getLogger(__name__)


def _reads_every_meter(principal: Principal) -> bool:
    """True for a platform administrator; NotAuthorised for a key limited to other function groups."""
    decision = within_scope(principal.groups, DeviceFunction.READ_METER_DATA)
    if not decision.allowed:
        raise NotAuthorised(decision.reason)
    return principal.admin


def registry_meter_access(app: FastAPI) -> Callable[[Principal], Awaitable[frozenset[str] | None]]:
    """Meter-data access decided by the registry: every meter for a platform administrator (by
    the registry, see :func:`cloud.api.identity.registered_principal`), else what the
    organisation holds OWNER, AD_HOC or MONITORING on; 403 for a key limited to other groups."""

    async def access(principal: Principal) -> frozenset[str] | None:
        if _reads_every_meter(principal):
            return None
        registry: Registry = app.state.registry
        return frozenset(await registry.meters_for_org(principal.org))

    return access


def registry_meter_access_among(app: FastAPI) -> Callable[[Principal, frozenset[str]], Awaitable[frozenset[str] | None]]:
    """:func:`registry_meter_access` asked only about ``wanted`` meters: of those, the ones the
    caller may read (None for a platform administrator: every meter)."""

    async def among(principal: Principal, wanted: frozenset[str]) -> frozenset[str] | None:
        if _reads_every_meter(principal):
            return None
        registry: Registry = app.state.registry
        return frozenset(await registry.readable_meters(principal.org, wanted))

    return among


def create_platform_app(settings: ApiSettings, *, store: InfluxStore | None = None,
                        clock: Clock | None = None, metrics: MetricsRegistry | None = None) -> FastAPI:
    """The full cloud web app. ``store`` (InfluxDB) as in :func:`cloud.api.app.create_app`;
    request latency goes into ``metrics`` when given."""
    app = create_app(settings=settings, store=store, clock=clock, extra_routers=PLATFORM_ROUTERS)
    if metrics is not None:
        app.add_middleware(RequestMetrics, registry=metrics)
    app.title = "Gridwire platform API"
    app.state.meter_access = registry_meter_access(app)
    app.state.meter_access_among = registry_meter_access_among(app)
    # A short or malformed sealing key refuses to build the app, as a weak JWT secret does.
    app.state.sealing = settings.sealing()
    # app.state, not dependency_overrides: with any override FastAPI rebuilds every route's
    # dependency tree on every request (cloud.api.deps.current_org).
    app.state.current_org = principal_org
    app.state.principal = registered_principal
    _clear(app)
    store_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as exits:
            await exits.enter_async_context(store_lifespan(app))
            if settings.migrate_on_start:
                await migrate(settings.database.url)
            registry = await exits.enter_async_context(open_registry("api", settings.database,
                                                                     sealing=app.state.sealing))
            # Refuse to serve with no sealing key, or the wrong one, while secrets are stored (or
            # any is in clear).
            await DeviceSecrets(registry.engine, app.state.sealing).check_ring()
            await webhook_secrets.check_ring(registry.engine, app.state.sealing)
            # Publish-only: nothing needs to be queued for it while it is away.
            session = await exits.enter_async_context(connected_session("api", settings.mqtt))
            app.state.accounts = await _accounts(settings, registry, session)
            dead_letters = DeadLetterStore(engine=registry.engine)
            await dead_letters.create_schema()
            app.state.registry = registry
            app.state.requests = RequestStore(registry.engine)
            app.state.mqtt = session
            app.state.drift_store = DriftStore(registry.engine)
            app.state.dead_letters = dead_letters
            app.state.schedules = ScheduleStore(registry.engine)
            if settings.oidc.issuer:
                app.state.oidc = JwksVerifier(settings.oidc)
                exits.push_async_callback(app.state.oidc.aclose)
            exits.callback(_clear, app)
            log.info("platform API ready (database %s, broker %s:%d)", settings.database.safe_url(),
                     settings.mqtt.host, settings.mqtt.port)
            yield

    app.router.lifespan_context = lifespan
    return app


async def _accounts(settings: ApiSettings, registry: Registry, session: MqttSession) -> AccountService:
    """Broker accounts through the dynamic security plugin, if the API's broker login may
    administer them (an ``api`` account); the registry's accounts applied again, the CRL written."""
    broker: DynsecAccounts | None = DynsecAccounts(session)
    try:
        await broker.start()  # type: ignore[union-attr]
    except NegativeAckError:
        log.warning("the API's broker login %s may not administer broker accounts (it needs an account of kind "
                    "api): provisioning and MQTT clients are refused", settings.mqtt.username)
        broker = None
    service = AccountService(AccountStore(registry.engine), broker, ca_dir=settings.pki_dir,
                             crl_file=settings.crl_file, broker_pid_file=settings.broker_pid_file,
                             reserved=reserved_names(settings))
    if broker is not None:
        await service.sync()
    if settings.crl_file is not None and settings.pki_dir is not None:
        await service.publish_crl()
    return service


def _clear(app: FastAPI) -> None:
    app.state.accounts = None
    app.state.registry = app.state.requests = app.state.mqtt = None
    app.state.drift_store = app.state.dead_letters = app.state.schedules = app.state.oidc = None


def https(settings: ApiSettings) -> dict[str, str]:
    """uvicorn's TLS options: the API serves HTTPS unless told plainly not to (then none, and
    :func:`run_api` logs a warning); Invalid, saying what to set, for neither."""
    if settings.api_tls_cert_file is not None and settings.api_tls_key_file is not None:
        return {"ssl_certfile": str(settings.api_tls_cert_file), "ssl_keyfile": str(settings.api_tls_key_file)}
    if settings.api_tls_cert_file is not None or settings.api_tls_key_file is not None:
        raise Invalid("GRIDWIRE_API_TLS_CERT_FILE and GRIDWIRE_API_TLS_KEY_FILE go together: set both")
    if not settings.api_insecure_http:
        raise Invalid("the API serves HTTPS: set GRIDWIRE_API_TLS_CERT_FILE and GRIDWIRE_API_TLS_KEY_FILE (e.g. "
                      "from gridwire broker pki server), or allow plain HTTP explicitly with --insecure-http "
                      "(GRIDWIRE_API_INSECURE_HTTP=true)")
    return {}


async def run_api(settings: ApiSettings, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
    """Serve the platform app on ``settings.api_host``:``api_port`` until ``stop`` is set;
    ``ready`` once it listens (its lifespan has run)."""
    import uvicorn

    tls = https(settings)  # refuse before anything starts
    if not tls:
        log.warning("the API serves plain HTTP on %s:%d (insecure HTTP was asked for): bearer tokens and claims "
                    "cross the network unencrypted", settings.api_host, settings.api_port)
    async with metrics_registry("api", settings.metrics) as metrics:
        await _serve(uvicorn, create_platform_app(settings, metrics=metrics), settings, tls, stop, ready)


async def _serve(uvicorn: Any, app: FastAPI, settings: ApiSettings, tls: dict[str, str],  # noqa: ANN401
                 stop: asyncio.Event, ready: asyncio.Event | None) -> None:
    # log_config=None: uvicorn's loggers go through the process's logging set-up.
    server = uvicorn.Server(uvicorn.Config(
        app, host=settings.api_host, port=settings.api_port, log_config=None, **tls,
        lifespan="on",
        # Longer than clients typically idle between calls: a keep-alive connection closed just
        # as a busy client reuses it surfaces as a failed request.
        timeout_keep_alive=30))
    serving = asyncio.create_task(server.serve(), name="api-uvicorn")
    stopping = asyncio.create_task(stop.wait(), name="api-stop")
    try:
        while not server.started and not serving.done():
            await asyncio.wait([serving, stopping], timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                break
        if server.started and ready is not None:
            ready.set()
        await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        await asyncio.gather(stopping, return_exceptions=True)
        await serving
    if not server.started and not stop.is_set():
        raise RuntimeError(f"the API could not start on {settings.api_host}:{settings.api_port}; see the log")
