"""An API wired to a real influxd database, a settable clock, and token helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cloud.api import create_app
from cloud.auth import issue_token
from cloud.settings import ApiSettings, InfluxSettings
from cloud.store import InfluxStore
from tests.cloud.registry.conftest import orgs, registry  # noqa: F401 - the admin routes' fixtures
from tests.fixtures.influx import InfluxServer

SECRET = "test-secret-not-for-production-use-only"


@dataclass
class Clock:
    """A clock the test moves by hand, so link expiry needs no waiting."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Api:
    client: httpx.AsyncClient
    store: InfluxStore
    clock: Clock
    settings: ApiSettings

    def token(self, org: str, *, meters: Iterable[str] | None = None, scopes: Iterable[str] = (),
              ttl: timedelta = timedelta(hours=1)) -> dict[str, str]:
        token = issue_token(secret=SECRET, org=org, meters=meters, scopes=scopes, ttl=ttl, now=self.clock())
        return {"Authorization": f"Bearer {token}"}


def make_settings(**changes: object) -> ApiSettings:
    values = {"jwt_secret": SECRET, "bulk_threshold_rows": 100, "bulk_link_ttl_seconds": 60, "max_page_size": 100,
              "bulk_chunk_rows": 7, **changes}
    return ApiSettings(**values)


@pytest.fixture
async def api(influxd: InfluxServer, influx_db: str) -> AsyncIterator[Api]:
    settings = make_settings(influx=InfluxSettings(url=influxd.url, database=influx_db))
    clock = Clock()
    async with InfluxStore(url=influxd.url, database=influx_db) as store:
        app = create_app(settings=settings, store=store, clock=clock)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield Api(client=client, store=store, clock=clock, settings=settings)
