"""The shipped OMDP catalogue: defects resolved, lookups, and the check of a reading."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.schemas import MeterReading, parse_meter_message
from cloud.catalogue import Catalogue, CatalogueError, OperationalPropertyDefinition, default_catalogue
from cloud.catalogue.build import element_id
from cloud.catalogue.catalogue import DATA_DIR

T = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def reading(*values: dict, meter_class: str | None = "ELECTRICITY") -> MeterReading:
    individual: dict = {"meterIndividualId": "m-1"}
    if meter_class:
        individual["physicalMeterType"] = {"physicalMeterClass": meter_class}
    return MeterReading.model_validate({
        "meterReadingIdentifier": str(MeterReading.derive_id("m-1", T)), "readingTime": T.isoformat(),
        "meterIndividual": individual,
        "propertyValues": [{"date": T.isoformat(), "operationalPropertyDefinition": {"propertyId": v.pop("id")}, **v}
                           for v in values]})


def test_known_defects_are_resolved_in_the_data() -> None:
    catalogue = default_catalogue()
    ids = {d.property_id for d in catalogue.properties()}
    assert "OBIS_16.8." not in ids and "OBIS_16.8.1" in ids
    assert "tariff T1" in catalogue.property("OBIS_16.8.1").property_description
    assert not [i for i in ids if " " in i or i.endswith(".")]  # the two section headings are gone
    assert all(re.fullmatch(r"[A-Za-z][\w.\-]*", i) for i in ids)
    assert catalogue.property("OBIS_15.7.0").preferred_unit == "kW"
    assert "kWh" not in catalogue.property("OBIS_15.7.0").allowed_units
    assert "(A-)" in catalogue.property("OBIS_2.8.1").property_description
    # What DSMR needs and OMDP lacks.
    assert catalogue.property("OBIS_24.2.1").allowed_units[0] == "m3"
    assert set(catalogue.property("OBIS_24.2.1").meter_classes) == {"GAS", "WATER", "HEAT"}
    assert catalogue.property("OBIS_C.7.0").allowed_units == ()
    for pid in ("OBIS_21.7.0", "OBIS_41.7.0", "OBIS_61.7.0", "HEAT_heat_energy", "HEAT_flow_temperature",
                "HEAT_return_temperature", "WATER_volume_of_water"):
        assert pid in catalogue
    assert catalogue.property("OBIS_C.2.1").value_type == "text"


def test_element_ids_are_valid_deterministic_uuids() -> None:
    raw = json.loads((DATA_DIR / "physical_meter_elements.json").read_text())
    for element in raw:
        parsed = uuid.UUID(element["physicalElementId"])
        assert parsed == element_id(element["physicalElementName"], element["physicalElementVersionId"])
        assert parsed.version == 5
    classes = {e["physicalMeterClass"] for e in raw}
    assert classes == {"ELECTRICITY", "GAS", "WATER", "HEAT"}


def test_corrected_omdp_examples_parse_and_fit_the_catalogue() -> None:
    catalogue = default_catalogue()
    for path in sorted((DATA_DIR / "examples").glob("*.json")):
        text = path.read_text()
        assert "physicalMeter\"" not in text and "propertyName" not in text
        [parsed] = parse_meter_message(text)
        assert catalogue.check(parsed) is None, path.name
        element = catalogue.element(parsed.meter_individual.physical_meter_type.physical_element_id)
        assert element is not None and element.origin == "OMDP example"
        assert parsed.meter_reading_identifier == MeterReading.derive_id(parsed.meter_id, parsed.reading_time)


def test_lookups() -> None:
    catalogue = default_catalogue()
    assert catalogue.property("nope") is None
    assert catalogue.element("not-a-uuid") is None
    water = catalogue.properties(meter_class="WATER")
    assert {d.property_id for d in water} >= {"WATER_volume_of_water", "OBIS_24.2.1"}
    assert all("WATER" in d.meter_classes for d in water)
    p1 = [e for e in catalogue.elements() if e.physical_element_name == "DSMR 5 electricity meter"][0]
    assert catalogue.element(str(p1.physical_element_id)) is p1
    assert p1.protocols == ("p1", "dlms")
    assert catalogue.elements(meter_class="HEAT")[0].physical_meter_class == "HEAT"


@pytest.mark.parametrize(("value", "fragment"), [
    ({"id": "OBIS_99.99.9", "numericalValue": 1.0, "unit": "kWh"}, "unknown operational property 'OBIS_99.99.9'"),
    ({"id": "OBIS_1.8.1", "numericalValue": 1.0, "unit": "kW"}, "unit 'kW' is not allowed for OBIS_1.8.1"),
    ({"id": "OBIS_15.7.0", "numericalValue": 1.0, "unit": "kWh"}, "unit 'kWh' is not allowed for OBIS_15.7.0"),
    ({"id": "OBIS_1.8.1", "numericalValue": 1.0}, "no unit is not allowed"),
    ({"id": "OBIS_1.8.1", "textValue": "12", "unit": "kWh"}, "takes a numericalValue"),
    ({"id": "OBIS_C.1.0", "numericalValue": 3.0}, "takes a textValue"),
    ({"id": "OBIS_C.7.0", "numericalValue": 3.0, "unit": "kWh"}, "has no unit"),
    ({"id": "WATER_volume_of_water", "numericalValue": 3.0, "unit": "m3"}, "not a property of a ELECTRICITY meter"),
])
def test_check_names_the_problem(value: dict, fragment: str) -> None:
    problem = default_catalogue().check(reading(value))
    assert problem is not None and fragment in problem


def test_check_accepts_good_readings_and_lists_several_problems() -> None:
    catalogue = default_catalogue()
    good = reading({"id": "OBIS_1.8.1", "numericalValue": 1.0, "unit": "kWh"},
                   {"id": "OBIS_1.7.0", "numericalValue": 900.0, "unit": "W"},
                   {"id": "OBIS_C.7.0", "numericalValue": 2.0}, {"id": "OBIS_C.1.0", "textValue": "E0012"})
    assert catalogue.check(good) is None
    gas = reading({"id": "OBIS_24.2.1", "numericalValue": 12.5, "unit": "m3"}, meter_class="GAS")
    assert catalogue.check(gas) is None
    unclassed = reading({"id": "WATER_volume_of_water", "numericalValue": 3.0, "unit": "m3"}, meter_class=None)
    assert catalogue.check(unclassed) is None
    bad = reading(*({"id": f"X_{i}", "numericalValue": 1.0} for i in range(5)))
    assert catalogue.check(bad).endswith("(+2 more)")


@given(unit=st.text(min_size=1, max_size=12))
def test_any_unit_outside_the_allowed_list_is_refused(unit: str) -> None:
    catalogue = default_catalogue()
    problem = catalogue.check(reading({"id": "OBIS_1.8.0", "numericalValue": 5.0, "unit": unit}))
    allowed = catalogue.property("OBIS_1.8.0").allowed_units
    assert (problem is None) == (unit in allowed)


def test_inconsistent_catalogue_data_is_refused() -> None:
    definition = OperationalPropertyDefinition(propertyId="A_1", propertyDescription="a", allowedUnits=["kWh"],
                                               meterClasses=["ELECTRICITY"], origin="test")
    with pytest.raises(CatalogueError, match="defined twice"):
        Catalogue(properties=[definition, definition], elements=[])
    element = default_catalogue().elements()[0]
    with pytest.raises(CatalogueError, match="not in the catalogue"):
        Catalogue(properties=[definition], elements=[element])
    with pytest.raises(ValueError, match="text property has no units"):
        OperationalPropertyDefinition(propertyId="B", propertyName="b", allowedUnits=["s"], valueType="text",
                                      meterClasses=["GAS"], origin="test")
