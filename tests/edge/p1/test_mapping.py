"""Telegram -> OMDP MeterReadings: ids, units, time zones, gas channels, configured mappings."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from broker.lean import MeterReading, parse_meter_message
from devices.adapter_config import parse_adapter_config
from devices.p1 import DEFAULT_P1_PROPERTIES
from edge.p1.mapping import MappingError, P1Mapper, telegram_to_readings
from edge.p1.telegram import GasValue, P1Values, build_telegram, frame_telegram, parse_telegram

NOW = datetime(2024, 11, 22, 13, 30, 5, tzinfo=UTC)
GAS_TIME = datetime(2024, 11, 22, 13, 25, tzinfo=UTC)
VALUES = P1Values(
    timestamp=NOW,
    delivered_t1=Decimal("123.456"), delivered_t2=Decimal("7.5"),
    power_delivered=Decimal("1.193"), voltages=(Decimal("230.1"), Decimal("229.9"), Decimal("231.0")),
    currents=(5, 0, 1), power_failures=4,
    gas=(GasValue(channel=2, timestamp=GAS_TIME, m3=Decimal("12.345")),),
)
CONFIG = parse_adapter_config({
    "meterIndividualId": "elec-1",
    "physicalElementId": "5f0c7e2a-9b1d-4e3f-8a6c-7d2e1f0a9b8c",
    "subMeters": [{"channel": 2, "meterIndividualId": "gas-1"}],
})


def by_property(reading: MeterReading) -> dict[str, tuple[float | str | None, str | None]]:
    return {v.property_id: (v.numerical_value if v.text_value is None else v.text_value, v.unit)
            for v in reading.property_values}


def test_default_mapping_of_electricity_and_gas():
    telegram = parse_telegram(build_telegram(VALUES))
    elec, gas = telegram_to_readings(telegram, CONFIG)

    assert elec.meter_id == "elec-1"
    assert elec.reading_time == NOW
    assert elec.reading_time.utcoffset() == timedelta(hours=1)  # W: CET
    assert elec.meter_reading_identifier == MeterReading.derive_id("elec-1", elec.reading_time)
    values = by_property(elec)
    assert values["OBIS_1.8.1"] == (123.456, "kWh")
    assert values["OBIS_1.8.2"] == (7.5, "kWh")
    assert values["OBIS_1.7.0"] == (1.193, "kW")
    assert values["OBIS_32.7.0"] == (230.1, "V")
    assert values["OBIS_31.7.0"] == (5, "A")
    assert values["OBIS_C.7.0"] == (4, None)
    # Every default property a DSMR 5 telegram has: all but the totals (1.8.0, 2.8.0: the Smarty's).
    assert set(values) == {m.property_id for m in DEFAULT_P1_PROPERTIES} - {"OBIS_1.8.0", "OBIS_2.8.0"}
    assert all(v.date == NOW for v in elec.property_values)
    assert str(elec.meter_individual.physical_meter_type.physical_element_id) == "5f0c7e2a-9b1d-4e3f-8a6c-7d2e1f0a9b8c"

    assert gas.meter_id == "gas-1"
    assert gas.reading_time == GAS_TIME
    assert gas.meter_reading_identifier == MeterReading.derive_id("gas-1", gas.reading_time)
    assert by_property(gas) == {"OBIS_24.2.1": (12.345, "m3")}
    assert gas.meter_individual.physical_meter_type.physical_meter_class == "GAS"


def test_readings_survive_the_wire():
    readings = telegram_to_readings(parse_telegram(build_telegram(VALUES)), CONFIG)
    for reading in readings:
        assert parse_meter_message(json.dumps(reading.to_wire())) == [reading]


def test_same_telegram_gives_the_same_ids():
    data = build_telegram(VALUES)
    first = telegram_to_readings(parse_telegram(data), CONFIG)
    second = telegram_to_readings(parse_telegram(data), CONFIG)
    assert [r.meter_reading_identifier for r in first] == [r.meter_reading_identifier for r in second]
    later = telegram_to_readings(parse_telegram(build_telegram(
        P1Values(timestamp=NOW + timedelta(seconds=1)))), CONFIG)
    assert later[0].meter_reading_identifier != first[0].meter_reading_identifier


def test_summer_time_reading_keeps_its_offset():
    telegram = parse_telegram(build_telegram(P1Values(timestamp=datetime(2024, 7, 1, 10, 0, tzinfo=UTC))))
    (reading,) = telegram_to_readings(telegram, CONFIG)
    assert reading.reading_time.utcoffset() == timedelta(hours=2)
    assert reading.to_wire()["readingTime"] == "2024-07-01T12:00:00+02:00"


def test_configured_mapping_with_scale_text_and_unit_mismatch(caplog):
    config = parse_adapter_config({
        "meterIndividualId": "elec-2",
        "operationalProperties": [
            {"source": "1-0:1.7.0", "propertyId": "OBIS_1.7.0", "unit": "W", "scale": 1000},
            {"source": "0-0:96.1.1", "propertyId": "equipmentId", "valueType": "text"},
            {"source": "0-0:96.14.0", "propertyId": "tariff"},
            # Wrong unit without a scale: skipped with one warning, the rest still published.
            {"source": "1-0:1.8.1", "propertyId": "OBIS_1.8.1", "unit": "Wh"},
            {"source": "1-0:99.99.9", "propertyId": "absent"},
        ],
    })
    mapper = P1Mapper(config)
    telegram = parse_telegram(build_telegram(VALUES))
    with caplog.at_level(logging.WARNING, logger="edge.p1.mapping"):
        (reading,) = mapper.readings(telegram)
        mapper.readings(telegram)
    assert by_property(reading) == {
        "OBIS_1.7.0": (1193.0, "W"),
        "equipmentId": ("E0000000000000001", None),
        "tariff": (2, None),
    }
    warnings = [r for r in caplog.records if "no scale" in r.getMessage()]
    assert len(warnings) == 1


def test_gas_channel_without_config_is_ignored_and_missing_channel_gives_no_reading():
    config = parse_adapter_config({"meterIndividualId": "e", "subMeters": [{"channel": 1, "meterIndividualId": "g"}]})
    readings = telegram_to_readings(parse_telegram(build_telegram(VALUES)), config)
    assert [r.meter_id for r in readings] == ["e"]


def test_repeated_gas_value_is_published_once_per_measurement():
    mapper = P1Mapper(CONFIG)
    ids = []
    for second in range(3):
        telegram = parse_telegram(build_telegram(
            P1Values(timestamp=NOW + timedelta(seconds=second), gas=VALUES.gas)))
        ids.append([r.meter_id for r in mapper.readings(telegram)])
    assert ids == [["elec-1", "gas-1"], ["elec-1"], ["elec-1"]]


def test_telegram_without_timestamp():
    telegram = parse_telegram(frame_telegram("ISK5", ["1-0:1.8.1(000001.000*kWh)"]))
    with pytest.raises(MappingError, match="timestamp"):
        telegram_to_readings(telegram, CONFIG)
    (reading,) = telegram_to_readings(telegram, CONFIG, received_at=NOW)
    assert reading.reading_time == NOW
