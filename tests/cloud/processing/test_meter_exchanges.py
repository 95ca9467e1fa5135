"""Meter exchanges recorded through the installation API, on both registry backends, and what
processing makes of one on a real influxd: the register restarts without a flag, consumption
continues across it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import Request

from broker.schemas import MeterReading
from cloud.api import create_app
from cloud.api.deps import current_org
from cloud.api.routes import installation, meter_exchanges
from cloud.auth import issue_token
from cloud.catalogue import default_catalogue
from cloud.processing.facts import MeterFacts, MeterLocks
from cloud.processing.intervals import Interval
from cloud.processing.processor import Processor
from cloud.processing.series import Quality
from cloud.processing.store import ProcessingStore
from cloud.registry import Registry
from cloud.settings import InfluxSettings
from cloud.store.influx import InfluxStore
from cloud.store.line_protocol import to_ns
from cloud.timesync.store import DriftStore
from broker.schemas.timesync import DriftReport
from tests.cloud.api.conftest import SECRET, Clock, make_settings
from tests.cloud.registry.conftest import orgs  # noqa: F401 - the organisations
from tests.cloud.registry.conftest import registry  # noqa: F401 - both backends, migrated

DAY = datetime(2026, 11, 2, tzinfo=UTC)
METER = {"identification": "m-x", "deviceType": "SMART_METER", "protocol": "DLMS"}


async def _org_from_header(request: Request) -> str:
    return request.headers["x-test-org"]


@pytest.fixture
async def client(registry: Registry, orgs: dict[str, str], influxd,  # noqa: F811
                 influx_db: str) -> AsyncIterator[httpx.AsyncClient]:
    """The whole API on a real influxd database, the installation routes' caller from a header."""
    async with InfluxStore(url=influxd.url, database=influx_db) as store:
        app = create_app(settings=make_settings(influx=InfluxSettings(url=influxd.url, database=influx_db)),
                         store=store, clock=Clock(now=DAY + timedelta(days=2)),
                         extra_routers=(installation.router, meter_exchanges.router))
        app.state.registry = registry
        app.dependency_overrides[current_org] = _org_from_header
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            yield http


async def test_an_exchange_is_recorded_once_by_whoever_may_update_the_meter(client: httpx.AsyncClient) -> None:
    utility, app = {"x-test-org": "utility"}, {"x-test-org": "app"}
    assert (await client.post("/v1/installation/devices", json=METER, headers=utility)).status_code == 201
    body = {"exchangedAt": "2026-11-02T10:07:00+00:00", "note": "meter replaced after a fault"}
    path = "/v1/installation/devices/m-x/meterExchanges"
    assert (await client.post(path, json=body, headers=utility)).status_code == 201
    assert (await client.post(path, json=body, headers=utility)).status_code == 200  # once
    assert (await client.post(path, json=body, headers=app)).status_code == 403
    assert (await client.post("/v1/installation/devices/nope/meterExchanges", json=body,
                              headers=utility)).status_code == 404
    naive = await client.post(path, json={"exchangedAt": "2026-11-02T10:07:00"}, headers=utility)
    assert naive.status_code == 422
    listed = (await client.get(path, headers=utility)).json()
    assert [(x["meterId"], x["exchangedAt"][:19], x["note"]) for x in listed] == [
        ("m-x", "2026-11-02T10:07:00", "meter replaced after a fault")]


def _reading(meter: str, when: datetime, value: float, unit: str = "kWh", clock: dict | None = None) -> MeterReading:
    return MeterReading.model_validate({
        "meterReadingIdentifier": str(MeterReading.derive_id(meter, when)), "readingTime": when.isoformat(),
        "meterIndividual": {"meterIndividualId": meter, "physicalMeterType": {"physicalMeterClass": "ELECTRICITY"}},
        "propertyValues": [{"unit": unit, "date": when.isoformat(), "numericalValue": value,
                            "operationalPropertyDefinition": {"propertyId": "OBIS_1.8.0"}}],
        **({"clock": clock} if clock else {})})


async def test_processing_across_an_exchange_a_drifting_clock_and_units(registry: Registry, influxd,  # noqa: F811
                                                                        influx_db) -> None:
    facts = MeterFacts(registry.engine)
    await facts.record_exchange("m-x", DAY + timedelta(hours=10, minutes=20))
    await DriftStore(registry.engine).record(DriftReport(meter_id="m-y", measured_at=DAY, drift_seconds=-95.0,
                                                         corrected=False))
    async with InfluxStore(url=influxd.url, database=influx_db) as influx:
        store = ProcessingStore(influx)
        processor = Processor(store=store, facts=facts, locks=MeterLocks(registry.engine),
                              catalogue=default_catalogue(), clock=lambda: to_ns(DAY + timedelta(days=2)))
        quarter = timedelta(minutes=15)
        # The old meter reads 500 kWh and rises by 0.25; the new one starts at 2 kWh, in Wh.
        for k, value, unit in ((40, 500.0, "kWh"), (41, 500.25, "kWh"), (42, 2000.0, "Wh"), (43, 2250.0, "Wh"),
                               (44, 2.5, "kWh")):
            await processor.process("m-x", [_reading("m-x", DAY + k * quarter, value, unit)])
        # The meter's clock was measured 95 s off and not corrected: its readings are flagged.
        await processor.process("m-y", [_reading("m-y", DAY + timedelta(hours=1), 10.0)])
        # A concentrator that started offline ran free for two weeks: up to 121 s off.
        await processor.process("m-y", [_reading("m-y", DAY - timedelta(hours=1), 9.0, clock={
            "synchronised": False, "freeRunningSeconds": 14 * 86_400, "lastOffsetSeconds": 0.0})])
        hour = await store.consumption("m-x", "OBIS_1.8.0", Interval.HOUR, to_ns(DAY + timedelta(hours=10)),
                                       to_ns(DAY + timedelta(hours=11)))
        # 10:00 -> 11:00: 0.25 on the old meter, none across the exchange, 0.25 + 0.25 on the new one.
        assert [(h.value, h.quality, h.rules, h.unit) for h in hour] == [(0.75, Quality.MEASURED, (), "kWh")]
        assert processor.failed == 2
        rows = influxd.query('SELECT "rules" FROM register_value WHERE "meter" = \'m-y\'', database=influx_db)
        assert [row[1] for row in rows["results"][0]["series"][0]["values"]] == ["clock_drift", "clock_drift"]


async def test_an_exchange_recorded_late_recomputes_as_if_known_from_the_start(
        client: httpx.AsyncClient, registry: Registry, influxd, influx_db) -> None:  # noqa: F811
    """Meter m-x's readings run across an exchange nobody recorded yet: the new meter's values
    fail register_decreased. Recording it judges them again and recomputes every interval, to
    what meter m-k (the same readings, its exchange recorded first) has had from the start."""
    utility = {"x-test-org": "utility"}
    exchange = {"exchangedAt": (DAY + timedelta(hours=10, minutes=20)).isoformat()}
    for meter in ("m-x", "m-k"):
        body = {**METER, "identification": meter}
        assert (await client.post("/v1/installation/devices", json=body, headers=utility)).status_code == 201
    assert (await client.post("/v1/installation/devices/m-k/meterExchanges", json=exchange,
                              headers=utility)).status_code == 201
    quarter = timedelta(minutes=15)
    # 06:00 to 18:00: the old meter rises from 500 kWh by 0.25 a quarter up to 10:15; the new
    # one starts at 2 kWh at 10:30 and rises by 0.5 a quarter. One value is a real spike.
    values = {k: 500.0 + 0.25 * (k - 24) for k in range(24, 42)}
    values |= {k: 2.0 + 0.5 * (k - 42) for k in range(42, 73)}
    values[60] = 900.0
    async with InfluxStore(url=influxd.url, database=influx_db) as influx:
        processor = Processor(store=ProcessingStore(influx), facts=MeterFacts(registry.engine),
                              locks=MeterLocks(registry.engine), catalogue=default_catalogue(),
                              clock=lambda: to_ns(DAY + timedelta(days=2)))
        for meter in ("m-x", "m-k"):
            for k, value in values.items():
                await processor.process(meter, [_reading(meter, DAY + k * quarter, value)])

    def rules(meter: str) -> dict[int, str]:
        rows = influxd.query(f'SELECT "rules" FROM register_value WHERE "meter" = \'{meter}\'', database=influx_db)
        return {(t - to_ns(DAY)) // to_ns(datetime(1970, 1, 1, 0, 15, tzinfo=UTC)): r
                for t, r in rows["results"][0]["series"][0]["values"] if r}

    headers = {"Authorization": "Bearer " + issue_token(secret=SECRET, org="utility", meters=["m-x", "m-k"],
                                                        now=DAY + timedelta(days=2))}

    async def consumption(meter: str, interval: str) -> list[dict]:
        response = await client.get(f"/v1/meters/{meter}/consumption", headers=headers, params={
            "interval": interval, "from": DAY.isoformat(), "to": (DAY + timedelta(days=1)).isoformat()})
        assert response.status_code == 200, response.text
        return response.json()["values"]

    # Unknown, the exchange fails every new-meter value but the spike (above the old meter's last).
    assert rules("m-x") == {k: "register_decreased" for k in range(42, 73) if k != 60}

    async def stored(meter: str) -> list:
        async with InfluxStore(url=influxd.url, database=influx_db) as influx:
            return [await ProcessingStore(influx).consumption(meter, "OBIS_1.8.0", interval, to_ns(DAY),
                                                              to_ns(DAY + timedelta(days=1))) for interval in Interval]

    unknown = await stored("m-x")
    assert [h.readings for h in unknown[1]] != [h.readings for h in (await stored("m-k"))[1]]
    assert (await client.post("/v1/installation/devices/m-x/meterExchanges", json=exchange,
                              headers=utility)).status_code == 201
    assert rules("m-x") == rules("m-k") == {60: "spike"}
    for interval in ("15min", "hour", "day", "month"):
        assert await consumption("m-x", interval) == await consumption("m-k", interval), interval
    hours = await consumption("m-x", "hour")
    # 10:00-11:00: 0.25 on the old meter to 10:15, none across the exchange, 1.0 on the new one.
    assert (hours[10]["value"], hours[10]["quality"]) == (1.25, "measured")
    # 06:00-18:00: 4.25 on the old meter, 15 on the new one (the spike left out).
    day = (await consumption("m-x", "day"))[0]
    assert (day["value"], day["quality"], day["readings"]) == (None, "missing", 48)
    assert sum(h["value"] for h in hours[6:18]) == 4.25 + 15.0
    # Recording it again changes nothing.
    assert (await client.post("/v1/installation/devices/m-x/meterExchanges", json=exchange,
                              headers=utility)).status_code == 200
    assert await consumption("m-x", "15min") == await consumption("m-k", "15min")
    # Removing it, recorded wrongly, leaves what there was before it was recorded.
    path = "/v1/installation/devices/m-x/meterExchanges"
    assert (await client.delete(path, params=exchange, headers=utility)).status_code == 204
    assert (await client.delete(path, params=exchange, headers=utility)).status_code == 404
    assert (await client.delete(path, params=exchange, headers={"x-test-org": "app"})).status_code == 403
    assert rules("m-x") == {k: "register_decreased" for k in range(42, 73) if k != 60}
    assert await stored("m-x") == unknown
