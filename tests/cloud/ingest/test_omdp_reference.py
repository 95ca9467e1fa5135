"""The OMDP reference concentrator's flat payload: mapped per the catalogue when its concentrator is
set to send it, dead-lettered with a reason naming the format and the setting when not; published
over the real broker, stored once in the real influxd, read back through POST /v1/meterReadings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import topics
from broker.schemas import MeterReading
from cloud.api.app import create_app
from cloud.auth import issue_token
from cloud.catalogue import default_catalogue
from cloud.deadletters import DeadLetterStore
from cloud.ingest import IngestConsumer, WriteBatcher
from cloud.ingest.checks import catalogue_check
from cloud.ingest.omdp_reference import ConcentratorFormat, ReferenceAdapter, property_id, registry_lookup, translate
from cloud.migrations import migrate
from cloud.registry import DeviceCreate, DeviceType, DeviceUpdate, InvalidChange, PayloadFormat, Protocol, Registry
from cloud.settings import ApiSettings, InfluxSettings
from cloud.store.influx import InfluxStore
from tests.fixtures.ingest import cloud_session, concentrator_session
from tests.fixtures.waiting import wait_for

SECRET = "omdp-reference-test-secret-not-for-production"
METER = "ref-meter-1"
T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
CATALOGUE = default_catalogue()
ON = ConcentratorFormat(payload_format="omdp-reference", time_zone="Europe/Amsterdam")


def reference(n: int, *, meter: str = METER, time: str | None = None, values: list[dict] | None = None) -> bytes:
    """What the reference concentrator publishes: strings for numbers, short OBIS names."""
    return json.dumps({
        "readingTime": time or (T0 + timedelta(minutes=15 * n)).isoformat().replace("+00:00", "Z"),
        "meterId": meter,
        "propertyValues": values or [
            {"propertyName": "1.7.0", "numericalValue": str(100 + n), "unit": "kW"},
            {"propertyName": "1-0:1.8.0", "numericalValue": f"{1000 + n}.5", "unit": "kWh"},
            {"propertyName": "1.0.32.7.0.255", "numericalValue": "230.1", "unit": "V"},
        ]}).encode()


def test_short_obis_names_become_catalogue_ids_and_strings_numbers() -> None:
    reading = translate(json.loads(reference(3)), meter=METER, fmt=ON, catalogue=CATALOGUE)
    assert reading.reading_time == T0 + timedelta(minutes=45)
    assert reading.meter_reading_identifier == MeterReading.derive_id(METER, T0 + timedelta(minutes=45))
    got = {v.property_id: (v.numerical_value, v.unit) for v in reading.property_values}
    assert got == {"OBIS_1.7.0": (103.0, "kW"), "OBIS_1.8.0": (1003.5, "kWh"), "OBIS_32.7.0": (230.1, "V")}
    assert reading.meter_individual.physical_meter_type.physical_meter_class == "ELECTRICITY"
    assert default_catalogue().check(reading) is None


def test_time_zones_units_and_unknown_properties_are_checked() -> None:
    local = json.loads(reference(0, time="2026-06-01T12:00:00"))  # CEST: 10:00 UTC
    assert translate(local, meter=METER, fmt=ON, catalogue=CATALOGUE).reading_time == T0
    with pytest.raises(ValueError, match="no time zone.*payloadTimeZone"):
        translate(local, meter=METER, fmt=ConcentratorFormat(payload_format="omdp-reference"), catalogue=CATALOGUE)
    millis = json.loads(reference(0))
    millis["readingTime"] = int(T0.timestamp() * 1000)
    assert translate(millis, meter=METER, fmt=ON, catalogue=CATALOGUE).reading_time == T0
    cases = {
        "unit 'MW' is not allowed for OBIS_1.7.0": [{"propertyName": "1.7.0", "numericalValue": "1", "unit": "MW"}],
        "'99.99.9' (OBIS_99.99.9) is not in the OMDP catalogue": [
            {"propertyName": "99.99.9", "numericalValue": "1", "unit": "kW"}],
        "numericalValue 'lots' is not a number": [{"propertyName": "1.7.0", "numericalValue": "lots", "unit": "kW"}],
        "'P+' is not an OBIS code": [{"propertyName": "P+", "numericalValue": "1", "unit": "kW"}],
    }
    for fragment, values in cases.items():
        with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
            translate(json.loads(reference(0, values=values)), meter=METER, fmt=ON, catalogue=CATALOGUE)
    with pytest.raises(ValueError, match="does not match the topic's meter"):
        translate(json.loads(reference(0, meter="other")), meter=METER, fmt=ON, catalogue=CATALOGUE)


@given(a=st.integers(0, 255), b=st.integers(0, 255), c=st.integers(0, 255), d=st.integers(0, 255),
       e=st.integers(0, 255))
def test_every_spelling_of_an_obis_code_gives_one_id(a: int, b: int, c: int, d: int, e: int) -> None:
    expected = f"OBIS_{c}.{d}.{e}"
    assert property_id(f"{c}.{d}.{e}") == property_id(f"{a}-{b}:{c}.{d}.{e}") == expected
    assert property_id(f"{a}.{b}.{c}.{d}.{e}.255") == property_id(f"{a}-{b}:{c}.{d}.{e}*255") == expected


async def test_payload_format_is_a_concentrators_setting(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite"
    await migrate(url)
    async with Registry(url=url) as registry:
        await registry.create_device(DeviceCreate(identification="m-1", device_type=DeviceType.SMART_METER,
                                                  protocol=Protocol.DSMR_P1))
        with pytest.raises(InvalidChange, match="concentrator's settings"):
            await registry.update_device("m-1", DeviceUpdate(payload_format=PayloadFormat.OMDP_REFERENCE))
        with pytest.raises(ValueError, match="unknown time zone"):
            DeviceUpdate(payload_time_zone="Mars/Olympus")


@pytest.fixture
async def registry(tmp_path) -> AsyncIterator[Registry]:
    url = f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite"
    await migrate(url)
    async with Registry(url=url) as reg:
        await reg.create_device(DeviceCreate(identification="conc-1", device_type=DeviceType.CONCENTRATOR,
                                             protocol=Protocol.MQTT))
        await reg.create_device(DeviceCreate(identification="conc-2", device_type=DeviceType.CONCENTRATOR,
                                             protocol=Protocol.MQTT))
        # Through the admin API's shape: the reference concentrator's settings, opt-in.
        await reg.update_device("conc-2", DeviceUpdate.model_validate(
            {"payloadFormat": "omdp-reference", "payloadTimeZone": "Europe/Amsterdam"}))
        yield reg


async def test_reference_payloads_over_mqtt_stored_once_and_queryable(
        mosquitto, influxd, influx_db, dead_letters: DeadLetterStore, registry: Registry) -> None:
    store = InfluxStore(url=influxd.url, database=influx_db)
    batcher = WriteBatcher(write=store.write_readings, max_readings=500, max_delay=0.05)
    session = cloud_session(mosquitto, payload_views=True)
    adapter = ReferenceAdapter(lookup=registry_lookup(registry))
    consumer = IngestConsumer(session=session, batcher=batcher, dead_letters=dead_letters,
                              checks=(catalogue_check(),), translate=adapter)
    stop = asyncio.Event()
    await session.connect()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await asyncio.wait_for(consumer.ready.wait(), 10)
        on = topics.concentrator_meter_message("conc-2", METER, "readings")
        off = topics.concentrator_meter_message("conc-1", "ref-meter-2", "readings")
        async with concentrator_session(mosquitto, "conc-2") as pub2, concentrator_session(mosquitto, "conc-1") as pub1:
            for n in range(24):
                await pub2.publish(on, reference(n))
            for n in range(6):  # redelivered, as after the reference concentrator reconnects
                await pub2.publish(on, reference(n))
            await pub2.publish(on, reference(30, values=[{"propertyName": "1.7.0", "numericalValue": "1",
                                                          "unit": "MW"}]))
            await pub1.publish(off, reference(0, meter="ref-meter-2"))
        await wait_for(lambda: consumer.stored_messages == 30 and consumer.dead_lettered == 2)
        assert adapter.translated == 30

        letters = {letter.topic: letter.reason for letter in await dead_letters.list()}
        assert "unit 'MW' is not allowed for OBIS_1.7.0" in letters[on]
        assert "OMDP reference concentrator's format" in letters[off]
        assert "payloadFormat" in letters[off] and "'omdp-reference'" in letters[off] and "conc-1" in letters[off]

        app = create_app(settings=ApiSettings(influx=InfluxSettings(url=influxd.url, database=influx_db),
                                              jwt_secret=SECRET), store=store)
        token = issue_token(secret=SECRET, org="org-a", meters=[METER], ttl=timedelta(hours=1))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            response = await client.post("/v1/meterReadings", headers={"Authorization": f"Bearer {token}"},
                                         json={"readingTimeStart": T0.isoformat(),
                                               "readingTimeEnd": (T0 + timedelta(days=1)).isoformat(),
                                               "pageSize": 100})
        assert response.status_code == 200, response.text
        rows = response.json()["meterReadings"]
        assert len(rows) == 24  # each once, the redelivered six included
        by_time = {datetime.fromisoformat(r["readingTime"]): r for r in rows}
        assert sorted(by_time) == [T0 + timedelta(minutes=15 * n) for n in range(24)]
        for n in (0, 23):
            row = by_time[T0 + timedelta(minutes=15 * n)]
            values = {v["operationalPropertyDefinition"]["propertyId"]: (v["numericalValue"], v["unit"])
                      for v in row["propertyValues"]}
            assert values == {"OBIS_1.7.0": (100.0 + n, "kW"), "OBIS_1.8.0": (1000.5 + n, "kWh"),
                              "OBIS_32.7.0": (230.1, "V")}
            assert row["meterReadingIdentifier"] == str(MeterReading.derive_id(METER, T0 + timedelta(minutes=15 * n)))
    finally:
        stop.set()
        await task
        await session.close()
        await store.aclose()
