"""Build the cloud web API: the OMDP meter-reading routes, health, and any routers passed in."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import APIRouter, FastAPI

from cloud.api.deps import Clock
from cloud.api.errors import install_error_table
from cloud.api.guards import install_guards
from cloud.api.openapi import install_openapi
from cloud.api.routes import OMDP_ROUTERS
from cloud.api.wire_rows import WireRenderer
from cloud.auth import MeterAccess, meters_from_claims, secret_problem
from cloud.catalogue import Catalogue, default_catalogue
from cloud.deadletters import DeadLetterStore
from cloud.runtime import influx_store
from cloud.settings import ApiSettings
from cloud.store import InfluxStore, StoreUnavailable

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(*, settings: ApiSettings, store: InfluxStore | None = None, meter_access: MeterAccess | None = None,
               extra_routers: Sequence[APIRouter] = (), clock: Clock | None = None,
               dead_letters: DeadLetterStore | None = None, catalogue: Catalogue | None = None) -> FastAPI:
    """The FastAPI app. A ``store`` passed in is used as is and left open; without one the
    lifespan builds it from ``settings`` and closes it at shutdown. ``meter_access`` decides
    which meters an organisation may read (default: the token's claims). ``dead_letters`` is
    listed at ``/v1/deadLetters`` (503 without one; the caller opens and closes it);
    ``catalogue`` defaults to the OMDP catalogue shipped with Gridwire."""
    problem = secret_problem(settings.jwt_secret.get_secret_value() if settings.jwt_secret else None)
    if problem is not None:
        raise ValueError(problem)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.store is not None:
            yield
            return
        owned = influx_store(settings.influx)
        if settings.influx.create_database:
            try:
                await owned.ensure_database()
            except StoreUnavailable as exc:
                # Serve anyway: /healthz reports it and queries answer 503 until InfluxDB is back.
                log.warning("could not create database %s: %s", settings.influx.database, exc)
        app.state.store = owned
        try:
            yield
        finally:
            app.state.store = None
            await owned.aclose()

    app = FastAPI(title="Gridwire cloud API", version="0.1.0", lifespan=lifespan,
                  description="OMDP meter readings and the Gridwire platform services.")
    app.state.settings = settings
    app.state.store = store
    app.state.meter_access = meter_access or meters_from_claims
    app.state.clock = clock or _utc_now
    app.state.dead_letters = dead_letters
    app.state.catalogue = catalogue or default_catalogue()
    # Renders JSON pages of readings; its caches (times, meters, units) are shared by every request.
    app.state.wire_renderer = WireRenderer()

    install_error_table(app)
    install_guards(app, limit=settings.max_body_bytes)
    install_openapi(app)
    for router in (*OMDP_ROUTERS, *extra_routers):
        app.include_router(router)
    return app
