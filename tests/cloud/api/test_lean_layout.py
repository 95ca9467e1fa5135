"""The lean store answers exactly as the layout before it did: the same readings written in the
old layout, in the lean one and half in each (a deployment part way through the change) give
the same OMDP answers through the API: pages, bulk NDJSON and CSV, filters, deletes by id,
idempotent rewrites and the union of fields."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx

from broker.schemas import MeterReading
from cloud.api import create_app
from cloud.settings import InfluxSettings
from cloud.store import InfluxStore, schema
from cloud.store.line_protocol import escape_key, escape_measurement, format_float, quote_string, to_ns
from tests.cloud.api.conftest import Api, Clock, make_settings
from tests.cloud.store.factories import T0
from tests.fixtures.influx import InfluxServer

METERS = ["m-1", "m 2,=x", "gas-3"]
CLASSES = [None, "ELECTRICITY", "GAS", "WATER", "HEAT"]


def readings() -> list[MeterReading]:
    """Every shape a point can take: derived and other ids, units implied, other and none,
    text values, a property outside the catalogue, value dates, classes, flags."""
    out = []
    for m, meter in enumerate(METERS):
        for i in range(30):
            when = T0 + timedelta(minutes=15 * i)
            energy_unit = "Wh" if i % 3 == 0 else None if i % 7 == 0 else "kWh"
            values: list[dict] = [
                {"unit": energy_unit, "date": when.isoformat(), "numericalValue": 100.0 + i + m / 8,
                 "operationalPropertyDefinition": {"propertyId": "OBIS_1.8.1"}},
                {"unit": "kW", "date": (when - timedelta(seconds=5)).isoformat(), "numericalValue": float(i % 7),
                 "operationalPropertyDefinition": {"propertyId": "OBIS_1.7.0"}}]
            if i % 4 == 1:
                values.append({"date": when.isoformat(), "textValue": f'door "{i}", open',
                               "operationalPropertyDefinition": {"propertyId": "OBIS_0.0.96.13.0"}})
            if i % 5 == 2:
                values.append({"unit": "u", "date": when.isoformat(), "numericalValue": -i * 1e-7,
                               "operationalPropertyDefinition": {"propertyId": "vendor.x"}})
            ident = uuid.uuid5(uuid.NAMESPACE_URL, f"{meter}{i}") if i % 5 == 0 else MeterReading.derive_id(meter,
                                                                                                            when)
            meter_class = CLASSES[(i + m) % len(CLASSES)]
            out.append(MeterReading.model_validate({
                "meterReadingIdentifier": str(ident), "readingTime": when.astimezone().isoformat(),
                "sequenceNumber": i if i % 2 else None, "faultCode": "F17" if i % 6 == 3 else None,
                "propertyValues": values,
                "meterIndividual": {"meterIndividualId": meter,
                                    "physicalMeterType": {"physicalMeterClass": meter_class}},
                "historical": i % 4 == 0,
            }))
    return out


def old_line(reading: MeterReading, concentrator: str = "conc-1") -> str:
    """A reading in the layout before the lean store (every attribute and unit on every point)."""
    stamp = to_ns(reading.reading_time)
    fields = [f"{schema.READING_ID}={quote_string(str(reading.meter_reading_identifier))}",
              f"{schema.HISTORICAL}={'true' if reading.historical else 'false'}"]
    if reading.fault_code is not None:
        fields.append(f"{schema.FAULT_CODE}={quote_string(reading.fault_code)}")
    if reading.sequence_number is not None:
        fields.append(f"{schema.SEQUENCE}={reading.sequence_number}i")
    fields.append(f"{schema.CONCENTRATOR}={quote_string(concentrator)}")
    kind = reading.meter_individual.physical_meter_type
    if kind is not None and kind.physical_meter_class is not None:
        fields.append(f"{schema.METER_CLASS}={quote_string(kind.physical_meter_class)}")
    for value in reading.property_values:
        key = escape_key(value.property_id)
        if value.numerical_value is not None:
            fields.append(f"{key}={format_float(value.numerical_value)}")
        else:
            fields.append(f"{key}{schema.TEXT_SUFFIX}={quote_string(value.text_value or '')}")
        if value.unit is not None:
            fields.append(f"{key}{schema.UNIT_SUFFIX}={quote_string(value.unit)}")
        if to_ns(value.date) != stamp:
            fields.append(f"{key}{schema.DATE_SUFFIX}={to_ns(value.date)}i")
    return f"{escape_measurement(schema.MEASUREMENT)},{schema.METER_TAG}={escape_key(reading.meter_id)} " \
           f"{','.join(fields)} {stamp}"


@asynccontextmanager
async def api_on(influxd: InfluxServer, database: str) -> AsyncIterator[Api]:
    settings = make_settings(influx=InfluxSettings(url=influxd.url, database=database), max_page_size=1000)
    clock = Clock()
    async with InfluxStore(url=influxd.url, database=database) as store:
        await store.ensure_database()
        app = create_app(settings=settings, store=store, clock=clock)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
            yield Api(client=client, store=store, clock=clock, settings=settings)


def window(**extra: object) -> dict:
    return {"readingTimeStart": T0.isoformat(), "readingTimeEnd": (T0 + timedelta(days=1)).isoformat(), **extra}


async def answers(api: Api) -> dict[str, object]:
    """What the API answers about the readings: pages, bulk downloads, a filter, counts."""
    admin = api.token("ops", scopes=["admin"])
    org = api.token("org1", meters=METERS[:2])
    out: dict[str, object] = {}
    for name, headers in (("admin", admin), ("org", org)):
        pages = []
        for number in (1, 2):
            r = await api.client.post("/v1/meterReadings", json=window(pageSize=50, pageNumber=number),
                                      headers=headers)
            assert r.status_code == 200, r.text
            pages.append(r.text)
        out[f"{name} pages"] = pages
        r = await api.client.post("/v1/meterReadings", json=window(responseFormat="bulk"), headers=headers)
        link = r.json()["bulkDownload"]["url"]
        out[f"{name} ndjson"] = (await api.client.get(link, headers=headers)).text
        out[f"{name} csv"] = (await api.client.get(link, params={"format": "csv"}, headers=headers)).text
    r = await api.client.post("/v1/meterReadings", json=window(operationalProperties=[
        {"propertyId": "OBIS_1.8.1", "numericalValueGreaterThan": 110}], pageSize=100), headers=admin)
    out["filtered"] = r.text
    return out


async def test_lean_old_and_mixed_layouts_answer_the_same(influxd: InfluxServer, influx_db: str) -> None:
    sent = readings()
    assert any(schema.is_derived(str(r.meter_reading_identifier), r.meter_id, to_ns(r.reading_time)) for r in sent)
    layouts = {"old": f"{influx_db}_old", "lean": f"{influx_db}_lean", "mixed": f"{influx_db}_mixed"}
    try:
        async with api_on(influxd, layouts["old"]) as old, api_on(influxd, layouts["lean"]) as lean, \
                api_on(influxd, layouts["mixed"]) as mixed:
            apis = {"old": old, "lean": lean, "mixed": mixed}
            await old.store.write_lines([old_line(r) for r in sent])
            await lean.store.write_readings(sent, concentrator_id="conc-1")
            await mixed.store.write_lines([old_line(r) for r in sent[::2]])
            await mixed.store.write_readings(sent[1::2], concentrator_id="conc-1")
            lean_columns = influxd.query(f'SHOW FIELD KEYS FROM "{schema.MEASUREMENT}"', database=layouts["lean"])
            stored = {row[0] for row in lean_columns["results"][0]["series"][0]["values"]}
            assert schema.CONCENTRATOR not in stored and "OBIS_1.8.1__unit" in stored  # "Wh", and "" for none
            first = {name: await answers(api) for name, api in apis.items()}
            assert first["lean"] == first["old"] and first["mixed"] == first["old"]
            assert '"unit":"Wh"' in first["old"]["admin ndjson"] and '"physicalMeterClass":"HEAT"' in \
                first["old"]["admin ndjson"]

            # Idempotence: everything sent again (now in the lean layout, on top of old points too).
            for api in apis.values():
                await api.store.write_readings(sent)
            assert {name: await answers(api) for name, api in apis.items()} == {name: first["old"] for name in apis}

            # Union of fields: the same reading again with another property.
            again = sent[4].model_copy(update={"property_values": [sent[4].property_values[0].model_copy(
                update={"operational_property": sent[4].property_values[0].operational_property.model_copy(
                    update={"property_id": "OBIS_2.8.0"})})]})
            for api in apis.values():
                await api.store.write_readings([again])
            union = {name: await answers(api) for name, api in apis.items()}
            assert union["lean"] == union["old"] and union["mixed"] == union["old"] != first["old"]
            assert union["old"]["admin ndjson"].count("OBIS_2.8.0") == 1

            # Deletes by id: a derived id and another, by an organisation and by an admin; then gone.
            victims = [(sent[1], "org1"), (sent[5], "org1"), (sent[31], "ops"), (sent[-5], "ops")]
            assert {schema.is_derived(str(v.meter_reading_identifier), v.meter_id, to_ns(v.reading_time))
                    for v, _ in victims} == {True, False}
            for victim, who in victims:
                for api in apis.values():
                    headers = api.token(who, meters=METERS[:2]) if who == "org1" else api.token(who, scopes=["admin"])
                    params = {"id": str(victim.meter_reading_identifier)}
                    assert (await api.client.delete("/v1/meterReadings", params=params, headers=headers)).status_code \
                        == 204
                    assert (await api.client.delete("/v1/meterReadings", params=params, headers=headers)).status_code \
                        == 404
            # A reading of a meter the organisation may not read is not found, whichever its layout.
            gas = next(r for r in sent if r.meter_id == "gas-3" and r is not sent[-5])
            for api in apis.values():
                r = await api.client.delete("/v1/meterReadings", params={"id": str(gas.meter_reading_identifier)},
                                            headers=api.token("org1", meters=METERS[:2]))
                assert r.status_code == 404
            deleted = {name: await answers(api) for name, api in apis.items()}
            assert deleted["lean"] == deleted["old"] and deleted["mixed"] == deleted["old"] != union["old"]
            for victim, _ in victims:
                assert str(victim.meter_reading_identifier) not in deleted["old"]["admin ndjson"]
    finally:
        for database in layouts.values():
            influxd.query(f'DROP DATABASE "{database}"')
