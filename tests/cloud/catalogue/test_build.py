"""The build script: defects fixed on input shaped like the OMDP files, committed data current."""

from __future__ import annotations

import json
import uuid

from broker.schemas import parse_meter_message
from cloud.catalogue.build import (
    adapter_elements,
    corrected_example,
    element_id,
    example_element,
    meter_individual_id,
    obis_sources,
    omdp_properties,
)
from cloud.catalogue.catalogue import DATA_DIR, ELEMENTS_FILE

ENERGY_EXCERPT = {"properties": [
    {"id": "OBIS_15.7.0", "description": "Absolute active instantaneous power (|A|)", "allowedUnits": ["kW"]},
    {"id": "OBIS_16.8.", "description": "Sum active energy without reverse blockade (A+ - A-) in tariff T1",
     "allowedUnits": ["kWh"]},
    {"id": "OBIS_2.8.1", "description": "Negative active energy (A+) in tariff T1", "allowedUnits": ["kWh"]},
    {"id": "OBIS_12. Events registers (counters and time-stamps)"},
    {"id": "OBIS_C.2.1", "description": "Event parameters change - timestamp"},
    {"id": "OBIS_C.53.1", "description": "Tamper 1 energy register"},
    {"id": "OBIS_13.7.0", "description": "Instantaneous power factor"},
    {"id": "OBIS_13. Miscellaneous registers used in sequences"},
]}

EXAMPLE = {
    "meterReadingIdentifier": "a1b2c3d4-e5f6-g7h8-i9j0-k1l2m3n4o5p6", "readingTime": "2023-11-22T12:00:00Z",
    "propertyValues": [{"unit": "kWh", "date": "2023-11-22T12:00:00Z", "numericalValue": 100.5,
                        "operationalPropertyDefinition": {"propertyId": "OBIS_15.7.0", "propertyName": "power",
                                                          "allowedUnits": ["kWh"]}}],
    "meterIndividual": {"meterIndividualId": "123e4567-e89b-12d3-a456-426614174abcd",
                        "physicalMeter": {"physicalElementId": "123e4567-e89b-12d3-a456-426614174008",
                                          "physicalElementName": "Example meter", "physicalElementVersionId": "v1",
                                          "physicalMeterClass": "ELECTRICITY"}},
}


def test_omdp_properties_drop_headings_fix_ids_and_fill_units() -> None:
    out = {p["propertyId"]: p for p in omdp_properties(ENERGY_EXCERPT, origin="test", meter_class="ELECTRICITY")}
    assert list(out) == ["OBIS_15.7.0", "OBIS_16.8.1", "OBIS_2.8.1", "OBIS_C.2.1", "OBIS_C.53.1", "OBIS_13.7.0"]
    assert out["OBIS_15.7.0"]["allowedUnits"] == ["kW", "W"]
    assert out["OBIS_2.8.1"]["propertyDescription"] == "Negative active energy (A-) in tariff T1"
    assert out["OBIS_C.2.1"]["valueType"] == "text" and out["OBIS_C.2.1"]["allowedUnits"] == []
    assert out["OBIS_C.53.1"]["allowedUnits"][0] == "kWh"
    assert out["OBIS_13.7.0"] == {**out["OBIS_13.7.0"], "valueType": "number", "allowedUnits": []}


def test_a_corrected_example_has_valid_ids_and_the_power_unit() -> None:
    catalogue = {p["propertyId"]: p for p in omdp_properties(ENERGY_EXCERPT, origin="t", meter_class="ELECTRICITY")}
    element = example_element(EXAMPLE, description="d", catalogue=catalogue)
    assert element["physicalElementId"] == str(element_id("Example meter", "v1"))
    assert element["physicalMeterOperationalProperties"][0]["unit"] == "kW"
    fixed = corrected_example(EXAMPLE, element=element)
    [reading] = parse_meter_message(json.dumps(fixed))
    assert reading.meter_id == str(meter_individual_id("123e4567-e89b-12d3-a456-426614174abcd"))
    assert reading.property_values[0].unit == "kW"
    assert reading.property_values[0].operational_property.property_description == "power"
    assert "physicalMeterType" in fixed["meterIndividual"] and "physicalMeter" not in fixed["meterIndividual"]
    assert uuid.UUID(fixed["meterReadingIdentifier"]).version == 5
    assert EXAMPLE["meterIndividual"]["physicalMeter"]["physicalElementName"] == "Example meter"  # input untouched


def test_obis_sources() -> None:
    assert obis_sources("OBIS_1.8.1") == {"p1": "1-0:1.8.1", "dlms": "1.0.1.8.1.255"}
    assert obis_sources("OBIS_C.7.0")["p1"] == "0-0:96.7.21"
    assert obis_sources("WATER_volume_of_water") == {}


def test_committed_elements_match_the_adapters_in_the_repo() -> None:
    """Fails when a register map, profile or the P1 default changes without a rebuild."""
    committed = {e["physicalElementName"]: e for e in json.loads((DATA_DIR / ELEMENTS_FILE).read_text())}
    for element in adapter_elements():
        assert committed[element["physicalElementName"]] == element, (
            f"{element['physicalElementName']}: rerun python -m cloud.catalogue.build <reference/omdp>")
