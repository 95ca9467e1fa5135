"""Bulk downloads (CSV, NDJSON, expiry, isolation), health, and how the app is put together."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import httpx
import pytest
from fastapi import APIRouter

from broker.schemas import MeterReading
from cloud.api import create_app
from cloud.auth import Principal, issue_token
from cloud.settings import ApiSettings, InfluxSettings
from cloud.store import InfluxStore, ReadingQuery
from tests.cloud.api.conftest import SECRET, Api, make_settings
from tests.cloud.store.factories import T0, series
from tests.fixtures.influx import InfluxServer
from tests.fixtures.procs import free_port

ABC = ["A", "B", "C"]


def window(**extra: object) -> dict:
    return {"readingTimeStart": T0.isoformat(), "readingTimeEnd": (T0 + timedelta(days=1)).isoformat(), **extra}


async def bulk_link(api: Api, headers: dict, **extra: object) -> dict:
    r = await api.client.post("/v1/meterReadings", json=window(**extra), headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["bulkDownload"]


async def test_bulk_ndjson_and_csv(api: Api) -> None:
    await api.store.write_readings(series(ABC + ["Z"], 10))
    headers = api.token("org1", meters=ABC)
    link = await bulk_link(api, headers, responseFormat="bulk", bulkFormat="ndjson")
    assert link["totalRows"] == 30 and link["format"] == "ndjson" and link["reason"] == "bulk download requested"
    assert link["url"].startswith("/v1/bulk/")

    r = await api.client.get(link["url"], headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    readings = [MeterReading.model_validate(json.loads(line)) for line in r.text.splitlines()]
    assert len({x.meter_reading_identifier for x in readings}) == 30
    assert {x.meter_id for x in readings} == set(ABC)

    r = await api.client.get(link["url"], params={"format": "csv"}, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 30 * 2  # two property values per reading, one row each
    assert {row["propertyId"] for row in rows} == {"OBIS_1.8.1", "OBIS_1.7.0"}
    assert {row["unit"] for row in rows} == {"kWh", "kW"}


async def test_large_answers_go_bulk_regardless(api: Api) -> None:
    await api.store.write_readings(series(["L1", "L2", "L3"], 40))  # 120 > threshold of 100
    headers = api.token("ops", scopes=["admin"])
    link = await bulk_link(api, headers, bulkFormat="csv")
    assert link["totalRows"] == 120 and "more than the 100 served as JSON" in link["reason"]
    r = await api.client.get(link["url"], headers=headers)
    assert len(list(csv.DictReader(io.StringIO(r.text)))) == 240
    capped = await bulk_link(api, headers, maxRows=30, responseFormat="bulk")
    r = await api.client.get(capped["url"], headers=headers)
    assert len(r.text.splitlines()) == 30


async def test_bulk_link_expires_and_belongs_to_its_organisation(api: Api) -> None:
    await api.store.write_readings(series(ABC, 10))
    headers = api.token("org1", meters=ABC)
    link = await bulk_link(api, headers, responseFormat="bulk")
    other = await api.client.get(link["url"], headers=api.token("org2", meters=ABC))
    assert other.status_code == 404
    assert (await api.client.get(link["url"])).status_code == 401
    assert (await api.client.get("/v1/bulk/not-a-token", headers=headers)).status_code == 404
    # A bearer token is not a link, and a link is not a bearer token.
    bearer = headers["Authorization"].removeprefix("Bearer ")
    assert (await api.client.get(f"/v1/bulk/{bearer}", headers=headers)).status_code == 404
    as_bearer = {"Authorization": "Bearer " + link["url"].removeprefix("/v1/bulk/")}
    assert (await api.client.post("/v1/meterReadings", json=window(), headers=as_bearer)).status_code == 401

    api.clock.advance(api.settings.bulk_link_ttl_seconds - 5)
    assert (await api.client.get(link["url"], headers=api.token("org1", meters=ABC))).status_code == 200
    api.clock.advance(10)
    gone = await api.client.get(link["url"], headers=api.token("org1", meters=ABC))
    assert gone.status_code == 410 and "expired" in gone.json()["detail"]


async def test_healthz_and_extra_routers(api: Api, influxd: InfluxServer) -> None:
    r = await api.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "influx": "1.6.7~rc0"}

    admin = APIRouter(prefix="/v1/admin", tags=["admin"])

    @admin.get("/ping")
    async def ping() -> dict:
        return {"pong": True}

    async def only_b(principal: Principal) -> frozenset[str]:
        return frozenset({"B"})

    await api.store.write_readings(series(ABC, 20))
    app = create_app(settings=api.settings, store=api.store, extra_routers=[admin], meter_access=only_b)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/v1/admin/ping")).json() == {"pong": True}
        r = await client.post("/v1/meterReadings", json=window(pageSize=50), headers=api.token("x", meters=ABC))
        assert r.json()["totalRows"] == 20


async def test_lifespan_builds_the_store_from_settings(influxd: InfluxServer) -> None:
    settings = make_settings(influx=InfluxSettings(url=influxd.url, database="lifespan_db"))
    app = create_app(settings=settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            assert (await client.get("/healthz")).status_code == 200
            store: InfluxStore = app.state.store
            await store.write_readings(series(["M"], 3))
            assert await store.count_readings(ReadingQuery(start=T0, end=T0 + timedelta(days=1))) == 3
    assert app.state.store is None
    influxd.query('DROP DATABASE "lifespan_db"')


async def test_store_down_is_503() -> None:
    settings = make_settings(influx=InfluxSettings(url=f"http://127.0.0.1:{free_port()}", timeout=1.0))
    app = create_app(settings=settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            health = await client.get("/healthz")
            assert health.status_code == 503 and health.headers["Retry-After"] == "5"
            assert health.json() == {"detail": {"status": "degraded",
                                                "influx": "unavailable: no answer to its ping"}}
            token = issue_token(secret=SECRET, org="o", scopes=["admin"])
            r = await client.post("/v1/meterReadings", json=window(), headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 503 and r.headers["Retry-After"] == "5"


def test_app_refuses_to_start_without_a_secret() -> None:
    with pytest.raises(ValueError, match="GRIDWIRE_JWT_SECRET"):
        create_app(settings=ApiSettings(jwt_secret=None))


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDWIRE_INFLUX_URL", "http://influx.example:8086")
    monkeypatch.setenv("GRIDWIRE_BULK_THRESHOLD_ROWS", "123")
    settings = ApiSettings()
    assert settings.influx.url == "http://influx.example:8086" and settings.bulk_threshold_rows == 123
