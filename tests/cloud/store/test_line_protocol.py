"""Line-protocol escaping: unit cases, and a property round trip through a real influxd."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.schemas import MeterReading
from cloud.store import schema
from cloud.store.line_protocol import LineProtocolError, encode_batch, encode_reading, quote_string, to_ns
from cloud.store.query import quote_identifier, quote_literal
from cloud.store.rows import iter_readings
from tests.cloud.store.factories import T0, reading
from tests.fixtures.influx import InfluxServer


def test_tag_and_field_key_escaping() -> None:
    r = reading("meter, one=1", T0, energy=2.5)
    line = encode_reading(r)
    assert line.startswith(r"meter_reading,meter=meter\,\ one\=1 ")
    assert line.endswith(f" {int(T0.timestamp()) * 10**9}")
    assert "OBIS_1.8.1=2.5" in line


def test_string_field_escaping() -> None:
    assert quote_string('say "hi" \\o/') == r'"say \"hi\" \\o/"'


def test_numbers_stay_floats() -> None:
    line = encode_reading(reading("m", T0, energy=5.0))
    assert "OBIS_1.8.1=5.0" in line


@pytest.mark.parametrize("meter", ["back\\slash", "line\nbreak"])
def test_unstorable_meter_ids_are_refused(meter: str) -> None:
    with pytest.raises(LineProtocolError, match="backslash"):
        encode_reading(reading(meter, T0))


def test_reserved_property_ids_are_refused() -> None:
    r = reading("m", T0)
    bad = r.model_copy(update={"property_values": [
        r.property_values[0].model_copy(update={"operational_property": r.property_values[0].operational_property
                                                .model_copy(update={"property_id": "reading_id"})})]})
    with pytest.raises(LineProtocolError, match="reserved"):
        encode_reading(bad)


# --- round trip through influxd ----------------------------------------------------------------

_FORBIDDEN_ID_CHARS = "/+#\\\n\r\x00"
meter_ids = st.text(st.characters(blacklist_characters=_FORBIDDEN_ID_CHARS, blacklist_categories=("Cs",)),
                    min_size=1, max_size=30)
# Some with a unit the lean layout implies (cloud.store.units), so both its unit rules are tried.
property_ids = st.sampled_from(["OBIS_1.8.1", "OBIS_1.7.0", "OBIS_32.7.0"]) | st.text(
    st.characters(blacklist_characters=_FORBIDDEN_ID_CHARS, blacklist_categories=("Cs",)),
    min_size=1, max_size=30).filter(lambda p: schema.property_id_problem(p) is None)
units = st.none() | st.sampled_from(["kWh", "kW", "V"]) | st.text(st.characters(blacklist_categories=("Cs",)),
                                                                  min_size=1, max_size=8)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
moments = st.datetimes(min_value=datetime(1980, 1, 1), max_value=datetime(2200, 1, 1),
                       timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]))


@st.composite
def readings(draw: st.DrawFn) -> MeterReading:
    meter = draw(meter_ids)
    when = draw(moments)
    pids = draw(st.lists(property_ids, min_size=1, max_size=4, unique=True))
    values = []
    for pid in pids:
        value: dict = {"date": draw(st.sampled_from([when, when - timedelta(minutes=1)])).isoformat(),
                       "operationalPropertyDefinition": {"propertyId": pid}}
        if draw(st.booleans()):
            value["numericalValue"] = draw(st.floats(allow_nan=False, allow_infinity=False))
        else:
            value["textValue"] = draw(texts)
        unit = draw(units)
        if unit is not None:
            value["unit"] = unit
        values.append(value)
    # A derived id makes a lean point, any other a full one.
    ident = MeterReading.derive_id(meter, when) if draw(st.booleans()) else uuid.uuid4()
    meter_class = draw(st.none() | st.sampled_from(["ELECTRICITY", "GAS", "WATER", "HEAT"]))
    return MeterReading.model_validate({
        "meterReadingIdentifier": str(ident), "readingTime": when.isoformat(),
        "faultCode": draw(st.none() | texts.filter(bool)), "propertyValues": values,
        "meterIndividual": {"meterIndividualId": meter, "physicalMeterType": {"physicalMeterClass": meter_class}},
        "historical": draw(st.booleans()),
    })


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(readings(), min_size=1, max_size=3, unique_by=lambda r: (r.meter_id, r.reading_time)))
def test_round_trip_through_influxd(influxd: InfluxServer, influx_db: str, batch: list[MeterReading]) -> None:
    body = encode_batch(batch, concentrator_id="c 1,\"x\"")
    response = httpx.post(f"{influxd.url}/write", params={"db": influx_db, "precision": "ns"},
                          content=body.encode(), timeout=10)
    assert response.status_code == 204, response.text
    try:
        _check_stored(influxd, influx_db, batch)
    finally:
        # Examples reuse meters and times (shrinking loves "0" and 1980-01-01); start each clean.
        influxd.query("DELETE FROM meter_reading", database=influx_db)


def _check_stored(influxd: InfluxServer, influx_db: str, batch: list[MeterReading]) -> None:
    for sent in batch:
        stamp = to_ns(sent.reading_time)
        result = influxd.query(f"SELECT * FROM meter_reading WHERE {quote_identifier('meter')} = "
                               f"{quote_literal(sent.meter_id)} AND time = {stamp}", database=influx_db)
        series = result["results"][0]["series"][0]
        (got,) = list(iter_readings(series["columns"], series["values"]))
        assert got.meter_reading_identifier == sent.meter_reading_identifier
        assert got.meter_id == sent.meter_id
        assert got.reading_time == sent.reading_time
        assert got.fault_code == sent.fault_code
        assert got.historical == sent.historical
        assert _meter_class(got) == _meter_class(sent)
        assert "concentrator" not in series["columns"]  # nothing reads it back: not stored
        expect = {(v.property_id, v.numerical_value, v.text_value, v.unit, v.date) for v in sent.property_values}
        assert {(v.property_id, v.numerical_value, v.text_value, v.unit, v.date) for v in got.property_values} == expect


def _meter_class(reading: MeterReading) -> str | None:
    kind = reading.meter_individual.physical_meter_type
    return None if kind is None else kind.physical_meter_class
